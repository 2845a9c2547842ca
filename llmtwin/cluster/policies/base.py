"""The interface every serving policy implements, and the checking of its parameters.

A policy has two halves that only talk through messages (``llmtwin/cluster/messages.py``):

* the :class:`Policy` itself lives in the balancer: it routes arrivals and keeps whatever view
  of the instances it needs (outstanding tokens, pools, pairs, roles);
* an :class:`Agent` per instance (made by :meth:`Policy.agent`) drives that instance's
  :class:`~llmtwin.cluster.engine.Engine`: it turns messages into engine inputs and the engine's
  events into messages.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from array import array
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from llmtwin.cluster.context import BALANCER, ClusterContext
from llmtwin.cluster.engine import Engine
from llmtwin.cluster.engine_events import EngineEvent, Finished
from llmtwin.cluster.faults import FaultLog, lost_requests, recover_time
from llmtwin.cluster.messages import Arrival, Dispatch, Done, InstanceDown, InstanceUp
from llmtwin.cluster.seqs import LostSeq, Role
from llmtwin.errors import ConfigurationError
from llmtwin.scenario.spec import FaultSpec
from llmtwin.sim.kernel import Outbox


@dataclass(frozen=True, slots=True)
class Param:
    """One policy parameter: its default, what it means, and what values it takes."""

    default: Any
    doc: str
    choices: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None


def read_params(policy: str, spec: Mapping[str, Param], given: Mapping[str, Any]) -> dict[str, Any]:
    """``given`` checked against ``spec`` and completed with defaults; a clear error otherwise."""
    unknown = sorted(set(given) - set(spec))
    if unknown:
        raise ConfigurationError(
            f"policy {policy!r} has no parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(spec))}"
        )
    out: dict[str, Any] = {}
    for key, p in spec.items():
        value = given.get(key, p.default)
        where = f"policy {policy!r} parameter {key}"
        if isinstance(p.default, bool):
            if not isinstance(value, bool):
                raise ConfigurationError(f"{where} must be true or false, got {value!r}")
        elif isinstance(p.default, int):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigurationError(f"{where} must be an integer, got {value!r}")
        elif isinstance(p.default, float):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigurationError(f"{where} must be a number, got {value!r}")
            value = float(value)
        elif isinstance(p.default, str) and (
            not isinstance(value, str) or (p.choices and value not in p.choices)
        ):
            raise ConfigurationError(f"{where} must be one of {', '.join(p.choices)}, got {value!r}")
        if p.low is not None and value < p.low:
            raise ConfigurationError(f"{where} must be >= {p.low:g}, got {value!r}")
        if p.high is not None and value > p.high:
            raise ConfigurationError(f"{where} must be <= {p.high:g}, got {value!r}")
        out[key] = value
    return out


class Agent(ABC):
    """The instance-side half of a policy: drives one engine."""

    def __init__(self, iid: int, ctx: ClusterContext, engine: Engine) -> None:
        self.iid = iid
        self.ctx = ctx
        self.engine = engine
        self.moved_rids: array[int] = array("i")
        self.moved_bytes: array[float] = array("d")
        """KV bytes this instance sent per request (transfers, replicas, syncs); typed arrays, as a
        device service keeps them for the whole run."""

    def moved(self, rid: int, nbytes: float) -> None:
        if nbytes > 0:
            self.moved_rids.append(rid)
            self.moved_bytes.append(nbytes)

    def done(self, now: float, ev: Finished, out: Outbox) -> None:
        """Tell the balancer a request finished here."""
        out.send(BALANCER, now, Done(ev.rid, self.iid, self.engine.used))

    @abstractmethod
    def on_event(self, now: float, ev: EngineEvent, out: Outbox) -> None:
        """The engine did something at ``ev.time == now`` that others must hear about."""

    @abstractmethod
    def on_message(self, now: float, body: Any, out: Outbox) -> None:
        """A message for this instance, at ``now``."""

    def end_step(self, now: float, out: Outbox) -> None:  # noqa: B027 - optional hook
        """After the step's events and messages: send what was decided over the whole step."""

    # -- faults (llmtwin/cluster/faults.py) ----------------------------------------------------------
    def on_down(
        self, now: float, fault: FaultSpec, lost: list[LostSeq], copies: list[int], out: Outbox
    ) -> None:
        """This instance failed at ``now``: its engine lost ``lost`` (and the redundant ``copies``).
        By default the balancer hears of it and has every lost request prefilled again."""
        out.send(BALANCER, now, InstanceDown(self.iid, recover_time(fault), [s.rid for s in lost]))
        if lost:
            out.send(BALANCER, now, lost_requests(self.iid, lost))

    def on_up(self, now: float, out: Outbox) -> None:
        """Back from a failure, empty: forget every request and tell the balancer."""
        out.send(BALANCER, now, InstanceUp(self.iid))

    def bounce(self, now: float, body: Any, out: Outbox) -> None:
        """A message reached this instance while it is down, as a refused connection: a request
        sent to it goes back to the balancer; anything else is dropped."""
        if isinstance(body, Dispatch):
            seq = LostSeq(
                body.rid, body.arrival_s, body.prompt_tokens, body.output_tokens, body.generated_tokens, 0
            )
            out.send(BALANCER, now, lost_requests(self.iid, [seq]))


class SimpleAgent(Agent):
    """Reports completions; everything else is the subclass's."""

    def on_event(self, now: float, ev: EngineEvent, out: Outbox) -> None:
        if isinstance(ev, Finished):
            self.done(now, ev, out)


class Policy(ABC):
    """The balancer-side half of a serving policy."""

    name: ClassVar[str]
    PARAMS: ClassVar[dict[str, Param]]
    SILENT: ClassVar[tuple[type, ...]] = ()
    """Messages from instances that :meth:`on_message` only records: it sends nothing for them
    (the balancer has no timers), so the services may hand them over after the window they
    belong to (``Component.silent_kinds``). ``tests/test_silent_steps.py`` checks every policy's
    claim on whole runs."""

    def __init__(self, params: Mapping[str, Any], ctx: ClusterContext) -> None:
        self.ctx = ctx
        self.params = read_params(self.name, self.PARAMS, params)
        self.fault_log = FaultLog()

    @abstractmethod
    def on_arrival(self, now: float, a: Arrival, out: Outbox) -> None:
        """Route a new request (one that fits an instance)."""

    @abstractmethod
    def on_message(self, now: float, body: Any, out: Outbox) -> None:
        """A message from an instance (completions, prefills, role changes, ...)."""

    @abstractmethod
    def agent(self, iid: int, engine: Engine) -> Agent:
        """The agent driving instance ``iid``'s engine."""

    def role(self, iid: int) -> Role:
        """The role instance ``iid`` starts in."""
        return Role.MIXED

    def evict_threshold(self) -> float:
        """Free-KV fraction below which an engine evicts redundant copies (AcceLLM)."""
        return 0.0
