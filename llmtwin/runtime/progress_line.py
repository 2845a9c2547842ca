"""The live progress line of ``llmtwin up``: virtual time, completed requests, windows/s, lag.

On a terminal it redraws one line in place (at most every ``interval_s``); otherwise it prints
a plain line every ``log_interval_s`` so logs stay short. Fed by the conductor's ``Progress``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

from proto.control import Progress


class ProgressLine:
    """Callable on each ``Progress``; ``close()`` ends the line."""

    def __init__(
        self,
        stream: TextIO,
        *,
        label: str = "",
        total: int | None = None,
        tty: bool | None = None,
        interval_s: float = 0.2,
        log_interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream, self.label, self.total = stream, label, total
        self.tty = stream.isatty() if tty is None else tty
        self.interval_s = interval_s if self.tty else log_interval_s
        self.clock = clock
        self.last_draw: float | None = None
        self.last_len = 0
        self.last: Progress | None = None

    def __call__(self, p: Progress) -> None:
        self.last = p
        now = self.clock()
        if self.last_draw is not None and now - self.last_draw < self.interval_s and not p.paused:
            return
        self.last_draw = now
        self._draw(self.render(p))

    def render(self, p: Progress) -> str:
        """One status line (no line end)."""
        rate = p.window / p.wall_s if p.wall_s > 0 else 0.0
        done = "" if p.completed < 0 else f"  done {p.completed}" + (f"/{self.total}" if self.total else "")
        lag = f"  lag {p.lag_s:.1f} s" if p.lag_s >= 0.05 else ""
        state = "  PAUSED" if p.paused else ""
        head = f"{self.label}  " if self.label else ""
        return (
            f"{head}t={p.time_s:.1f} s virtual{done}  {p.window} windows ({rate:,.0f}/s)"
            f"  {p.wall_s:.0f} s wall{lag}{state}"
        )

    def _draw(self, line: str) -> None:
        if self.tty:
            self.stream.write("\r" + line + " " * max(0, self.last_len - len(line)))
            self.last_len = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Draw the final state and end the line."""
        if self.last is not None:
            self._draw(self.render(self.last))
            if self.tty:
                self.stream.write("\n")
                self.stream.flush()
        self.last = None
