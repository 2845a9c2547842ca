"""Simulated accelerator failures, inside the components: one instance's down/up schedule.

A fault (``scenario.faults``, ``--fault engine=3@30s,recover=90s``) is part of the scenario, so
every component knows it from the start and a run is the same in one process and over NATS. At
``at_s`` the failing :class:`~llmtwin.cluster.components.Instance` commits the iterations that
end by then (the one in flight produces nothing), lets its agent see what happened before, then
loses its memory; its agent reports the failure (``InstanceDown`` to the balancer, and what is
lost, see each policy) as the failure detector would at that instant. Until ``recover_s`` the
instance runs nothing and answers every message as a dead peer would (a refused connection:
``Agent.bounce``). At ``recover_s`` it comes back empty in its starting role (``InstanceUp``).
What each policy does with the lost requests is in its own module and in docs/policies.md.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from llmtwin.cluster.messages import Arrival, LostRequests
from llmtwin.cluster.seqs import LostSeq
from llmtwin.scenario.spec import FaultSpec


class FaultSchedule:
    """The down and up transitions of one instance, in time order."""

    def __init__(self, faults: Sequence[FaultSpec]) -> None:
        steps: list[tuple[float, bool, FaultSpec]] = []
        for f in sorted(faults, key=lambda f: f.at_s):
            steps.append((f.at_s, True, f))
            if f.recover_s is not None:
                steps.append((f.recover_s, False, f))
        # A recovery and the next failure at the same instant: recover first.
        self.steps = sorted(steps, key=lambda s: (s[0], s[1]))
        self.i = 0

    def next_time(self) -> float:
        return self.steps[self.i][0] if self.i < len(self.steps) else float("inf")

    def due(self, now: float) -> list[tuple[bool, FaultSpec]]:
        """The transitions at or before ``now`` not yet applied: (goes down, its fault)."""
        out = []
        while self.i < len(self.steps) and self.steps[self.i][0] <= now:
            _, down, f = self.steps[self.i]
            out.append((down, f))
            self.i += 1
        return out


def lost_requests(iid: int, seqs: Sequence[LostSeq], kv_at: int = -1) -> LostRequests:
    """The message telling the balancer these requests must be served again."""
    return LostRequests(
        iid,
        [s.rid for s in seqs],
        [s.arrival_s for s in seqs],
        [s.prompt for s in seqs],
        [s.output for s in seqs],
        [s.generated for s in seqs],
        [s.kv_tokens for s in seqs],
        [kv_at] * len(seqs),
    )


def recover_time(f: FaultSpec) -> float:
    """``InstanceDown.recover_s``: the recovery time, -1 for never."""
    return -1.0 if f.recover_s is None else f.recover_s


@dataclass(frozen=True, slots=True)
class LostEntry:
    """One request of a :class:`LostRequests`, as the balancer re-serves it."""

    arrival: Arrival
    generated: int
    kv_tokens: int
    kv_at: int


def entries(m: LostRequests) -> Iterator[LostEntry]:
    for i, rid in enumerate(m.rids):
        a = Arrival(rid, m.arrival_s[i], m.prompt_tokens[i], m.output_tokens[i])
        yield LostEntry(a, m.generated_tokens[i], m.kv_tokens[i], m.kv_at[i])


@dataclass(slots=True)
class FaultLog:
    """What failures did to requests, as the balancer saw it (exported with its results)."""

    hit: dict[int, None] = field(default_factory=dict)
    """Requests a failed instance held, or that reached one (insertion-ordered set)."""
    recomputed: dict[int, int] = field(default_factory=dict)
    """Requests prefilled again after a failure: KV tokens lost (summed over failures)."""
    redirected: dict[int, None] = field(default_factory=dict)

    def affected(self, rids: Sequence[int]) -> None:
        self.hit.update(dict.fromkeys(rids))

    def recompute(self, rid: int, kv_tokens: int) -> None:
        self.hit[rid] = None
        self.recomputed[rid] = self.recomputed.get(rid, 0) + kv_tokens

    def redirect(self, rid: int) -> None:
        self.hit[rid] = None
        self.redirected[rid] = None
