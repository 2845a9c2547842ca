"""Pacing: the wall-clock deadline of each window, so virtual time runs at ``--speed``."""

from __future__ import annotations

import math
import time
from collections import deque


class Pacer:
    """Maps virtual time to a wall-clock deadline: ``start + T / speed``, pauses excluded.

    ``speed`` is virtual seconds per wall second (1.0 = real time); ``inf`` never waits.
    """

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self.start = time.perf_counter()
        self.paused_s = 0.0
        self.lag_s = 0.0

    def delay_s(self, virtual_s: float) -> float:
        """Wall seconds to wait before opening a window at ``virtual_s`` (<= 0: open now)."""
        if math.isinf(self.speed):
            return 0.0
        deadline = self.start + self.paused_s + virtual_s / self.speed
        return deadline - time.perf_counter()

    def allowed_s(self) -> float:
        """The latest virtual time whose window may open now (``inf`` at infinite speed)."""
        if math.isinf(self.speed):
            return math.inf
        return (time.perf_counter() - self.start - self.paused_s) * self.speed

    def restart(self) -> None:
        """Count the pace from now (the first window), not from the run request."""
        self.start = time.perf_counter()

    def opened(self, virtual_s: float) -> None:
        """Record the lag behind the pace at the moment a window opens."""
        self.lag_s = max(0.0, -self.delay_s(virtual_s))

    def elapsed_s(self) -> float:
        return time.perf_counter() - self.start


class SpeedMeter:
    """Achieved pace: virtual seconds per wall second over the latest ``span_s`` of windows."""

    def __init__(self, span_s: float = 1.0) -> None:
        self.span_s = span_s
        self.samples: deque[tuple[float, float]] = deque()

    def add(self, virtual_s: float) -> float:
        """A window closed at ``virtual_s`` now; the speed over the span that ends here."""
        now = time.perf_counter()
        samples = self.samples
        samples.append((now, virtual_s))
        while len(samples) > 2 and now - samples[1][0] >= self.span_s:
            samples.popleft()
        wall = now - samples[0][0]
        return (virtual_s - samples[0][1]) / wall if wall > 0 else 0.0
