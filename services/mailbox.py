"""The envelopes waiting for one hosted component.

Envelopes come with the grants, so every one held was produced in an earlier window (as
LocalRunner delivers a window's output only after the window). They wait in a heap ordered by
the envelope key; a step at ``now`` takes everything stamped <= now, already in handling order,
without scanning what is due later (the generator sends hundreds of future arrivals at once).
"""

from __future__ import annotations

import heapq

from llmtwin.sim.kernel import Envelope


class Mailbox:
    """Buffered envelopes of one component."""

    def __init__(self) -> None:
        self._due: list[tuple[tuple[float, int, str, int], Envelope]] = []

    def add(self, env: Envelope) -> None:
        # Keys are unique (a sender never reuses a seq), so the envelope is never compared.
        heapq.heappush(self._due, (env.key, env))

    def take(self, now: float) -> list[Envelope]:
        """Remove and return, in key order, every envelope stamped <= ``now``."""
        out = []
        due = self._due
        while due and due[0][0][0] <= now:
            out.append(heapq.heappop(due)[1])
        return out

    def __len__(self) -> int:
        return len(self._due)
