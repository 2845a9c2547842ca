"""Conservative time windows: which components step at which virtual time.

The planner knows each component's next internal event time and, for every component, the
delivery times of the messages sent to it and not yet delivered. It opens a window at
``T = min(all of those)`` and grants it to exactly the components with something to do at T.
Messages produced in a window are delivered no earlier than the next window, even when stamped
T (a "delta cycle" at the same T). Every transport uses this class, so the sequence of windows,
and what each component sees in each, does not depend on the transport.
"""

from __future__ import annotations

import heapq
from collections.abc import Container, Iterable
from dataclasses import dataclass

from llmtwin.sim.kernel import INF


@dataclass(frozen=True, slots=True)
class Grant:
    """Permission for one component to step at ``time``, with how many messages it must have."""

    window: int
    time: float
    component: str
    expect: int
    """Messages stamped <= time that the component must hold before stepping (a barrier count)."""


class WindowPlanner:
    """Plans windows from the reports components give after each step."""

    def __init__(self, components: Iterable[str]) -> None:
        self._next: dict[str, float] = dict.fromkeys(components, 0.0)
        self._pending: dict[str, list[float]] = {c: [] for c in self._next}
        self._heap: list[tuple[float, str]] = [(0.0, c) for c in sorted(self._next)]
        heapq.heapify(self._heap)
        self.window = 0

    @property
    def components(self) -> list[str]:
        return sorted(self._next)

    def next_time(self, component: str) -> float:
        """The component's next internal event, as last reported."""
        return self._next[component]

    def pending(self, component: str) -> int:
        """Messages sent to the component and not yet granted to it."""
        return len(self._pending[component])

    def _wake(self, c: str) -> float:
        pend = self._pending[c]
        return min(self._next[c], pend[0] if pend else INF)

    def earliest(self, components: Iterable[str]) -> float:
        """The earliest wake of ``components`` (``INF`` when none has anything to do)."""
        return min(map(self._wake, components), default=INF)

    def earliest_except(self, excluded: Container[str]) -> float:
        """The earliest wake of every component not in ``excluded`` (``INF`` when none has
        anything to do): what :meth:`earliest` gives for all the others, found by walking the
        heap in time order from its root, so that only entries due before the answer are read
        (cheap when ``excluded`` is a few components of many). Exact while every component
        outside ``excluded`` has an entry at its wake: true of all but the components of a window
        opened and not yet reported (``report`` and ``expect`` push one at every change)."""
        heap, wake = self._heap, self._wake
        if not heap:
            return INF
        todo = [(heap[0], 0)]
        while todo:
            (t, c), i = heapq.heappop(todo)
            if c not in excluded and t == wake(c):
                return t
            for k in (2 * i + 1, 2 * i + 2):
                if k < len(heap):
                    heapq.heappush(todo, (heap[k], k))
        return INF

    def next_window_time(self) -> float:
        """The time of the next window (``INF`` when nothing is left), without opening it."""
        heap = self._heap
        while heap:
            t, c = heap[0]
            if t == self._wake(c):
                return t
            heapq.heappop(heap)  # stale entry
        return INF

    def next_window(self, until: float = INF) -> list[Grant]:
        """Grants of the next window (empty when nothing is left before ``until``)."""
        now = self.next_window_time()
        if now > until or now == INF:
            return []
        members: list[str] = []
        while self._heap and self._heap[0][0] == now:
            _, c = heapq.heappop(self._heap)
            if self._wake(c) == now and c not in members:
                members.append(c)
        self.window += 1
        grants = []
        for c in sorted(members):
            pend = self._pending[c]
            n = 0
            while pend and pend[0] <= now:
                heapq.heappop(pend)
                n += 1
            grants.append(Grant(self.window, now, c, n))
        return grants

    def expect(self, component: str, time: float) -> None:
        """A message for ``component`` at ``time`` from a sender this planner does not follow (a
        host's planner of its own components learns so of what other services sent them)."""
        heapq.heappush(self._pending[component], time)
        heapq.heappush(self._heap, (self._wake(component), component))

    def subset(self, components: Iterable[str]) -> WindowPlanner:
        """A planner of ``components`` only, in the state this one has them in (a restarted
        host's planner of its own components, after it replayed the run)."""
        sub = WindowPlanner(components)
        for c in sub._next:
            sub._next[c] = self._next[c]
            sub._pending[c] = list(self._pending[c])
        sub._heap = [(w, c) for c in sorted(sub._next) if (w := sub._wake(c)) < INF]
        heapq.heapify(sub._heap)
        return sub

    def report(self, component: str, next_time: float, sent: Iterable[tuple[str, float]]) -> None:
        """After a step: the component's next internal event and the (dst, time) of each message it sent."""
        self._next[component] = next_time
        touched = {component}
        for dst, t in sent:
            if dst not in self._pending:
                raise KeyError(f"message to unknown component {dst!r}")
            heapq.heappush(self._pending[dst], t)
            touched.add(dst)
        for c in touched:
            w = self._wake(c)
            if w < INF:
                heapq.heappush(self._heap, (w, c))
