"""The conductor's books of steps held back (docs/architecture.md, "Silent steps").

A step that takes only what its component takes silently (``Component.silent_kinds``: it sends
nothing and keeps its next event), with no event of its own then, needs no round trip: the
conductor reports it to its planner as it will be and keeps a ``DeferredStep`` for its
service's next grant, with the envelopes produced before it. Which waiting envelopes are silent
the senders say (``DoneItem.sent_silent``); the receiving host checks the claim when it takes
the step.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Mapping, Sequence

from llmtwin.sim.windows import Grant, WindowPlanner
from proto.control import DeferredStep, DoneItem, WireEnvelope

MAX_HELD = 256
"""Steps held back for one service before they go out in a round of their own (bounds a grant's size)."""


class HeldSteps:
    """Silent envelopes waiting, and the steps held back per service."""

    def __init__(self) -> None:
        self._silent_due: dict[str, list[float]] = {}
        """Component -> times of the waiting envelopes it takes silently (a heap)."""
        self.queued: dict[str, list[DeferredStep]] = {}
        """Service -> steps held back for its next grant, in window order."""
        self.count = 0
        """Steps held back so far (each one a window with no round trip of its own)."""
        self.since: dict[str, float] = {}
        """Service -> monotonic() when the oldest step of its queue was queued."""

    def sent(self, item: DoneItem) -> None:
        """A reported step: note the envelopes it sent that their receivers take silently."""
        for dst, t, quiet in zip(item.sent_dst, item.sent_time_s, item.sent_silent, strict=False):
            if quiet:
                heapq.heappush(self._silent_due.setdefault(dst, []), t)

    def take_silent(self, g: Grant) -> int:
        """How many of the envelopes ``g`` hands its component are silent (every window the
        planner opens takes them, whoever steps it)."""
        due, n = self._silent_due.get(g.component), 0
        while due and due[0] <= g.time:
            heapq.heappop(due)
            n += 1
        return n

    def hold(
        self,
        grants: list[Grant],
        planner: WindowPlanner,
        hosts: Mapping[str, Sequence[str]],
        relay: dict[str, list[WireEnvelope]],
        *,
        allowed: bool,
        whole: bool,
        behind: Mapping[str, Sequence[str]],
    ) -> list[Grant]:
        """Take the waiting envelopes of a window the planner opened; hold back (``allowed``)
        the steps that take only silent ones, with no event of their own then, on a service
        that steps nothing else in the window: report them to ``planner`` as they will be (same
        next event, nothing sent) and queue them, with what ``relay`` holds for their service,
        for its next grant. With ``whole``, only if every step of the window can be and their
        queues are not full (the window then closes at once: a held step never belongs to the
        open window, which a restarted service does not replay). Returns the steps to grant now."""
        held: list[Grant] = []
        for g in grants:
            n = self.take_silent(g)
            where = hosts.get(g.component, ())
            if (
                allowed
                and 0 < g.expect == n
                and len(where) == 1
                and planner.next_time(g.component) > g.time
                and (not whole or len(self.queued.get(where[0], ())) < MAX_HELD)
            ):
                held.append(g)
        if not held or (whole and len(held) < len(grants)):
            return grants
        busy = {svc for g in grants if g not in held for svc in hosts[g.component]}
        # A service that steps another component at this instant takes this step too.
        taken = [g for g in held if hosts[g.component][0] not in busy]
        for g in taken:
            svc = hosts[g.component][0]
            step = DeferredStep(g.window, g.time, g.component, g.expect, relay.pop(svc, []))
            self._queue(svc, step)
            next_s = planner.next_time(g.component)
            # The same silent step behind the actor: nothing sent (digest 0), the same next event.
            self.behind(
                behind.get(g.component, ()), relay, g.window, g.time, g.component, g.expect, 0, next_s
            )
            planner.report(g.component, next_s, ())
            self.count += 1
        return [g for g in grants if g not in taken]

    def behind(
        self,
        leaders: Sequence[str],
        relay: dict[str, list[WireEnvelope]],
        window: int,
        time_s: float,
        component: str,
        expect: int,
        digest: int,
        next_time_s: float,
    ) -> None:
        """Queue the step the actor of ``component`` took in ``window`` for each of its
        ``leaders`` behind it (``DeferredStep.replica``), with what ``relay`` holds for them."""
        for svc in leaders:
            self._queue(
                svc,
                DeferredStep(
                    window, time_s, component, expect, relay.pop(svc, []), True, digest, next_time_s
                ),
            )

    def _queue(self, svc: str, step: DeferredStep) -> None:
        steps = self.queued.setdefault(svc, [])
        if not steps:
            self.since[svc] = time.monotonic()
        steps.append(step)

    def due(self, max_age_s: float = math.inf) -> list[str]:
        """Services with :data:`MAX_HELD` steps or more held back for them (a service running
        ahead can hold back up to 256 per answer: they go out in a round of their own), or
        whose oldest was held back ``max_age_s`` ago or more (a leader behind the service acting
        for its component gets no other grant, and its metrics must not fall behind)."""
        now = time.monotonic()
        return sorted(
            svc
            for svc, steps in self.queued.items()
            if len(steps) >= MAX_HELD or (steps and now - self.since[svc] >= max_age_s)
        )

    def pop(self, svc: str) -> list[DeferredStep]:
        """The steps held back for ``svc``, now handed to a grant (or dropped: a restarted service
        replays every closed window, held ones included)."""
        self.since.pop(svc, None)
        return self.queued.pop(svc, [])
