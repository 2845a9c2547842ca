"""The envelopes delivered to one component and not yet handed to a step.

They wait in a heap ordered by the envelope key (the event-ordering rule of
:mod:`llmtwin.sim.kernel`); a step at ``now`` takes everything stamped <= now, already in
handling order, without scanning what is due later (the generator sends hundreds of future
arrivals at once). LocalRunner and the host services keep one per component and fill it only
after the window that produced the envelopes, so both hand a step the same inbox.
"""

from __future__ import annotations

import heapq

from llmtwin.sim.kernel import Envelope


class Mailbox:
    """Delivered envelopes of one component."""

    def __init__(self) -> None:
        self._due: list[tuple[tuple[float, int, str, int], Envelope]] = []

    def add(self, env: Envelope) -> None:
        # Keys are unique (a sender never reuses a seq), so the envelope is never compared.
        heapq.heappush(self._due, (env.key, env))

    def __len__(self) -> int:
        return len(self._due)

    def take(self, now: float) -> list[Envelope]:
        """Remove and return, in key order, every envelope stamped <= ``now``."""
        out = []
        due = self._due
        while due and due[0][0][0] <= now:
            out.append(heapq.heappop(due)[1])
        return out
