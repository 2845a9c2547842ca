"""A small throttled progress bar on stderr for long runs.

On a terminal it redraws one line in place, at most every ``interval_s`` and only once the run
has lasted ``delay_s`` (short runs print nothing). On anything else (a log file, CI) it prints
a plain line every ``log_interval_s``, so long batch runs still show they are alive. The wall
clock is injected (``clock``) so that tests can drive it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO


class ProgressBar:
    """Callable as ``progress(virtual_time_s, completed_requests)`` (what ``run_scenario`` calls)."""

    def __init__(
        self,
        total: int | None,
        stream: TextIO,
        *,
        label: str = "",
        tty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        delay_s: float = 0.5,
        interval_s: float = 0.2,
        log_interval_s: float = 15.0,
        width: int = 30,
    ) -> None:
        self.total = total
        self.stream = stream
        self.label = label
        self.tty = stream.isatty() if tty is None else tty
        self.clock = clock
        self.delay_s = delay_s
        self.interval_s = interval_s if self.tty else log_interval_s
        self.width = width
        self.start = clock()
        self.last_draw: float | None = None
        self.drawn = False
        self.last_line_len = 0

    def __call__(self, virtual_time_s: float, completed: int) -> None:
        now = self.clock()
        elapsed = now - self.start
        if elapsed < (self.delay_s if self.tty else self.interval_s):
            return
        if self.last_draw is not None and now - self.last_draw < self.interval_s:
            return
        self.last_draw = now
        self._draw(self.render(virtual_time_s, completed, elapsed))

    def render(self, virtual_time_s: float, completed: int, elapsed_s: float) -> str:
        """One status line (no line end)."""
        head = f"{self.label} " if self.label else ""
        tail = f" t={virtual_time_s:.1f}s virtual, {elapsed_s:.0f}s wall"
        if not self.total:
            return f"{head}{completed} requests done{tail}"
        frac = min(1.0, completed / self.total)
        filled = round(frac * self.width)
        bar = "#" * filled + "." * (self.width - filled)
        return f"{head}[{bar}] {completed}/{self.total} ({frac * 100:.0f}%){tail}"

    def _draw(self, line: str) -> None:
        if self.tty:
            pad = " " * max(0, self.last_line_len - len(line))
            self.stream.write("\r" + line + pad)
            self.last_line_len = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        """End the in-place line (if one was drawn) so later output starts on a fresh line."""
        if self.tty and self.drawn:
            self.stream.write("\n")
            self.stream.flush()
        self.drawn = False
