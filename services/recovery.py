"""How the conductor keeps a run going when a service dies, restarts or loses messages.

Three recoveries, each exact (``docs/architecture.md``, "Recovery"):

* **Re-issue** (lost messages, e.g. a nats-server restart): the current window's grants are
  sent again; a host answers a grant for the window it last stepped from what it kept, without
  stepping again, so answering twice changes nothing; the conductor takes one answer per
  service and attempt.
* **Rejoin** (a service restarted by its supervisor, known by its new ``boot``): it rebuilds
  every component and replays windows 1..k in-process (``LocalRunner``, the code of
  ``llmtwin simulate``), k being the last window the conductor closed, keeps its own
  components, and rejoins; the conductor checks each one's next event time and waiting
  messages against its own books, drops what it was about to relay (the replay has it) and
  sends the open window's grant again, without envelopes.
* **Failover** (a silent leader whose components all have a live follower, ``--follow``): the
  followers become leaders at once; the open window is re-issued to them (a new attempt,
  without the components in ``follow``), and they answer from what they kept, now with the
  envelopes.

The functions here change the run's state and say what to send; the conductor sends it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import msgspec

from proto.control import GrantBatch, Ready, RunConfig

if TYPE_CHECKING:
    from services.run_state import RunState

MAX_RESTARTS = 5
"""Restarts of one service within one run before the run fails (two processes with one name
would otherwise take turns forever)."""


@dataclass(slots=True)
class Recovery:
    """A restarted service catching up: what it replays to and what its state must then be."""

    window: int
    """It replays windows 1..window."""
    boot: str
    """The process start that is catching up."""
    expect: dict[str, tuple[float, int]] = field(default_factory=dict)
    """Component -> (next event time, envelopes waiting) the replay must arrive at."""
    since: float = field(default_factory=time.monotonic)


def restarted(state: RunState, svc: str, boot: str) -> RunConfig | None:
    """``svc`` runs as a new process (``boot``): its components' state is gone. Returns the
    ``RunConfig`` that makes it catch up, or None when it hosts nothing now (its components
    failed over) or is already catching up with this process."""
    current = state.recovering.get(svc)
    if current is not None and current.boot == boot:
        return None
    comps = sorted(
        {c for c, hosts in state.hosts.items() if svc in hosts}
        | {c for c, b in state.behind.items() if svc in b}
    )
    if not comps:
        return None
    state.restarts[svc] = state.restarts.get(svc, 0) + 1
    if state.restarts[svc] > MAX_RESTARTS:
        state.fail(
            svc, f"{svc} restarted {state.restarts[svc]} times in run {state.run}: two processes named {svc}?"
        )
        return None
    window = state.window - 1 if state.open and not state.flushing else state.window
    state.relay.pop(svc, None)  # produced in windows <= window: the replay delivers them
    state.held.pop(svc)  # steps of windows <= window: the replay takes them
    granted = {g.component: g.expect for g in state.grants} if state.open else {}
    if state.open and svc in state.expected:
        state.dones.pop(svc, None)
        old = state.batches[svc]
        state.batches[svc] = msgspec.structs.replace(old, envelopes=[], deferred=[], attempt=old.attempt + 1)
    state.recovering[svc] = Recovery(
        window,
        boot,
        {c: (state.planner.next_time(c), state.planner.pending(c) + granted.get(c, 0)) for c in comps},
    )
    state.lost.pop(svc, None)
    cfg = state.config
    return msgspec.structs.replace(cfg, until_s=state.req.until_s, catch_up=window, to=svc)


def rejoined(state: RunState, ready: Ready) -> str:
    """A catching-up service's ``Ready``: '' when it matches the conductor's books (it is back
    in the run), else why not (the run then fails)."""
    who = ready.service
    rec = state.recovering[who]
    if ready.error:
        return ready.error
    if ready.code_digest != state.config.code_digest or ready.scenario_digest != state.config.scenario_digest:
        return f"{who} came back with another installation or scenario than the run's"
    for cid, (next_s, pending) in rec.expect.items():
        got = (ready.next_time_s.get(cid), ready.pending.get(cid))
        if got != (next_s, pending):
            return (
                f"replay of {cid} on {who} to window {rec.window} diverged: next event {got[0]!r} and "
                f"{got[1]} messages waiting, the run has {next_s!r} and {pending}"
            )
    del state.recovering[who]
    state.boots[who] = ready.boot
    return ""


def lose(state: RunState, svc: str) -> list[str]:
    """``svc`` went silent: promote a live follower of each component it leads, drop it as a
    follower; the services whose grant of the open window changed (to send again). ``svc`` is
    kept in ``state.lost`` when it still leads something (it must come back)."""
    gone = set(state.lost) | set(state.recovering) | {svc}
    changed: set[str] = set()
    for cid, hosts in state.hosts.items():
        if svc not in hosts:
            continue
        if hosts[0] != svc:
            hosts.remove(svc)
            continue
        live = [f for f in hosts[1:] if f not in gone]
        if live:
            hosts.remove(svc)
            hosts.remove(live[0])
            hosts.insert(0, live[0])
            state.leaders[cid] = live[0]
            changed.add(live[0])
    state.hosts_changed()
    if any(svc in hosts for hosts in state.hosts.values()):
        state.lost.setdefault(svc, time.monotonic())
    if not state.open:
        return []
    granted = {g.component for g in state.grants}
    for who in sorted(changed | {svc}):
        if not any(who in state.hosts[c] for c in granted):
            state.expected.discard(who)
            state.batches.pop(who, None)
            state.dones.pop(who, None)
            changed.discard(who)
            continue
        old = state.batches[who]
        state.batches[who] = state.batch_for(who, old.attempt + 1, old.envelopes, old.deferred)
        state.dones.pop(who, None)
    return sorted(changed - {svc})


def failed_over(state: RunState, svc: str) -> bool:
    """Whether ``svc`` leads nothing any more (every component it led has a new leader)."""
    return not any(hosts[0] == svc for hosts in state.hosts.values())


def reissue(state: RunState, svc: str) -> GrantBatch | None:
    """The open window's grant to ``svc`` if it still owes its answer and can take it."""
    if svc in state.recovering or svc not in state.owing():
        return None
    return state.batches.get(svc)
