"""The conductor's replay of the windows a host ran by itself under a horizon grant.

A host granted a window alone, with a horizon, steps the windows after it that only its own
components have (``services/window_steps.py``) and lists them in its answer
(``DoneBatch.ahead``). The conductor takes each into its planner as if it had opened it: it must
be the window the planner opens next, once the other services' silent steps before it are held
back (docs/architecture.md, "Horizon grants" and "Silent steps"); anything else fails the run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmtwin.sim.windows import Grant
from proto.control import DoneBatch
from services.run_failed import RunFailed

if TYPE_CHECKING:
    from services.run_state import RunState


def replay_ahead(state: RunState, svc: str, batch: DoneBatch) -> int:
    """Take the windows ``svc`` ran by itself after the open one; the envelopes they sent."""
    if len(state.dones) != 1 or not state.horizon_s > state.now_s:
        raise RunFailed(svc, f"{svc} ran ahead of window {state.window} without a horizon grant")
    sent = 0
    for ahead in batch.ahead:
        grants = _next_of(state, svc)
        want = [g.component for g in grants]
        got = [it.component for it in ahead.items]
        if not grants or want != got or grants[0].time != ahead.time_s or not ahead.time_s < state.horizon_s:
            raise RunFailed(
                svc,
                f"{svc} ran {got} at t={ahead.time_s!r} ahead of window {state.window}; the run's "
                f"next window is {want} at t={grants[0].time if grants else None!r}",
            )
        state.window, state.now_s = grants[0].window, ahead.time_s
        for item, g in zip(ahead.items, grants, strict=True):
            if state.hosts[item.component] != [svc]:
                raise RunFailed(svc, f"{svc} ran {item.component} ahead, which it does not host alone")
            sent += state.report(svc, item, g.expect)
        state.relay_envelopes(ahead.envelopes, svc)
    return sent


def _next_of(state: RunState, svc: str) -> list[Grant]:
    """The next window the planner opens with a component of ``svc`` (which ran it ahead),
    holding back the other services' steps in it and before it: under its horizon grant they
    can only be steps taking what ``svc`` sent them silently (anything else fails the check
    that follows)."""
    while True:
        grants = state.planner.next_window(state.req.until_s)
        if not grants:
            return []
        mine = [g for g in grants if svc in state.hosts[g.component]]
        for g in mine:
            state.held.take_silent(g)
        others = [g for g in grants if g not in mine]
        rest = state.held.hold(
            others, state.planner, state.hosts, state.relay, allowed=True, whole=False, behind=state.behind
        )
        if rest:
            return grants  # not all held back: the check fails, naming them
        if mine:
            return mine
