"""Progress of a batch of runs on stderr: "run k of n", the current run's requests, time left.

One display for every command that runs simulations (``simulate``: a batch of one; ``compare``,
``sweep``, ``capacity``: many)::

    with RunProgress(len(points), sys.stderr, enabled=not quiet) as progress:
        for label, scenario in points:
            result = run_scenario(scenario, progress=progress.start(label, scenario.workload.requests))
            progress.done()

Runs in worker processes report nothing while they run: call only ``done(label)`` as each one
finishes. A search that discovers it needs more runs raises ``progress.runs``.

On a terminal one line is redrawn in place, at most every ``interval_s`` and only once the batch
has lasted ``delay_s`` (quick batches print nothing). Anywhere else (a log file, CI) a plain line
is printed every ``log_interval_s`` and when a run finishes, so long batch jobs show they are
alive. The time left assumes the runs still to come cost what the finished ones did (a finished
run counts 1, the current run its fraction of requests done). The clock is injected (``clock``)
so that tests can drive it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

Progress = Callable[[float, int], None]
"""``progress(virtual_time_s, completed_requests)``: what ``run_scenario`` calls as it runs."""


def duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class RunProgress:
    """ "run k of n" with the current run's progress and an estimate of the time left."""

    def __init__(
        self,
        runs: int,
        stream: TextIO,
        *,
        enabled: bool = True,
        tty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        delay_s: float = 0.5,
        interval_s: float = 0.2,
        log_interval_s: float = 15.0,
        width: int = 24,
    ) -> None:
        self.runs = runs
        """Runs in the batch (may grow while it runs)."""
        self.stream = stream
        self.enabled = enabled
        self.tty = stream.isatty() if tty is None else tty
        self.clock = clock
        self.delay_s = delay_s if self.tty else log_interval_s
        self.interval_s = interval_s if self.tty else log_interval_s
        self.width = width
        self.start_s = clock()
        self.finished = 0
        self.label = ""
        self.requests: int | None = None
        self.fraction = 0.0
        """Of the current run, by requests completed."""
        self._last_draw: float | None = None
        self._line_len = 0

    # -- the batch -----------------------------------------------------------------------------------
    def start(self, label: str, requests: int | None = None) -> Progress:
        """The next run begins; returns its ``progress(virtual_time_s, completed)`` callback."""
        self.label, self.requests, self.fraction = label, requests, 0.0

        def progress(virtual_time_s: float, completed: int) -> None:
            if self.requests:
                self.fraction = min(1.0, completed / self.requests)
            self._tick(self.render(virtual_time_s, completed))

        return progress

    def done(self, label: str | None = None) -> None:
        """A run finished (the current one, or ``label`` from a worker process)."""
        self.finished += 1
        self.fraction = 0.0
        if label is not None:
            self.label = label
        if self.tty:
            self._tick(self.summary_line())
        elif self.enabled and self.elapsed_s() >= self.delay_s:
            self._write(self.summary_line())
            self._last_draw = self.clock()

    def note(self, text: str) -> None:
        """A line of its own between progress lines (a search's finished row, say)."""
        if self.enabled:
            self._write(text)

    def close(self) -> None:
        """End the in-place line (if one was drawn) so later output starts on a fresh line."""
        if self.tty and self._line_len:
            self.stream.write("\n")
            self.stream.flush()
        self._line_len = 0

    def __enter__(self) -> RunProgress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- text ----------------------------------------------------------------------------------------
    def elapsed_s(self) -> float:
        return self.clock() - self.start_s

    def left_s(self) -> float | None:
        """Estimated seconds until the batch ends; None before anything measurable happened."""
        progressed = self.finished + self.fraction
        if progressed <= 0.0:
            return None
        return self.elapsed_s() * max(0.0, self.runs - progressed) / progressed

    def _head(self) -> str:
        return f"run {min(self.finished + 1, self.runs)} of {self.runs}" if self.runs > 1 else ""

    def _tail(self) -> str:
        left = self.left_s()
        parts = [f"{duration(self.elapsed_s())} elapsed"]
        if left is not None:
            parts.append(f"about {duration(left)} left")
        return ", ".join(parts)

    def render(self, virtual_time_s: float, completed: int) -> str:
        """The line shown while a run progresses (no line end)."""
        head = " ".join(x for x in (self._head(), self.label) if x)
        if self.requests:
            filled = round(self.fraction * self.width)
            bar = "#" * filled + "." * (self.width - filled)
            done = f"[{bar}] {completed}/{self.requests} requests"
        else:
            done = f"{completed} requests done"
        return f"{head}{': ' if head else ''}{done}, t={virtual_time_s:.1f}s virtual, {self._tail()}"

    def summary_line(self) -> str:
        """The line printed when a run finishes."""
        who = f" ({self.label})" if self.label else ""
        return f"{self.finished} of {self.runs} runs done{who}, {self._tail()}"

    # -- drawing -------------------------------------------------------------------------------------
    def _tick(self, line: str) -> None:
        if not self.enabled:
            return
        now = self.clock()
        if now - self.start_s < self.delay_s:
            return
        if self._last_draw is not None and now - self._last_draw < self.interval_s:
            return
        self._last_draw = now
        if self.tty:
            pad = " " * max(0, self._line_len - len(line))
            self.stream.write("\r" + line + pad)
            self._line_len = len(line)
            self.stream.flush()
        else:
            self._write(line)

    def _write(self, line: str) -> None:
        if self.tty and self._line_len:
            self.stream.write("\n")
            self._line_len = 0
        self.stream.write(line + "\n")
        self.stream.flush()
