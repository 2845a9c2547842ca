"""The envelopes waiting for one hosted component.

An envelope produced in window w may only be handed to a step from window w + 1 on (LocalRunner
delivers a window's output after the window), so arrivals first wait in ``recent`` with their
window, then move to a heap ordered by the envelope key. A step at ``now`` takes everything in
the heap stamped <= now, already in handling order, without scanning what is due later (the
generator sends hundreds of future arrivals at once).
"""

from __future__ import annotations

import heapq

from llmtwin.sim.kernel import Envelope


class Mailbox:
    """Buffered envelopes of one component."""

    def __init__(self) -> None:
        self._recent: list[tuple[int, Envelope]] = []
        self._due: list[tuple[tuple[float, int, str, int], Envelope]] = []

    def add(self, window: int, env: Envelope) -> None:
        """An envelope produced in ``window``."""
        self._recent.append((window, env))

    def take(self, window: int, now: float) -> list[Envelope]:
        """Remove and return, in key order, every envelope from before ``window`` stamped <= ``now``."""
        if self._recent:
            keep = []
            for w, env in self._recent:
                if w < window:
                    # Keys are unique (a sender never reuses a seq), so the envelope is never compared.
                    heapq.heappush(self._due, (env.key, env))
                else:
                    keep.append((w, env))
            self._recent = keep
        out = []
        due = self._due
        while due and due[0][0][0] <= now:
            out.append(heapq.heappop(due)[1])
        return out

    def __len__(self) -> int:
        return len(self._recent) + len(self._due)
