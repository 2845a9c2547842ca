"""Rate-limited warnings: one line per reason per interval, with the count of those held back.

A flood of bad messages (a fuzzer, a misconfigured peer) must not flood the log or cost a line
of formatting each: the first of a reason is logged at once, the next ones only counted until
the interval has passed; the next line then says how many were held back. :meth:`flush`
reports what is still held back (at shutdown).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Reason:
    logged_at: float
    held: int = 0
    last: str = ""


class RateLimitedLog:
    """``warn(reason, message)``: at most one line per ``reason`` per ``interval_s``."""

    def __init__(
        self,
        logger: logging.Logger,
        interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger, self.interval_s, self.clock = logger, interval_s, clock
        self._reasons: dict[str, _Reason] = {}

    def warn(self, reason: str, message: str) -> bool:
        """Log ``message`` unless a line for ``reason`` was logged less than ``interval_s`` ago
        (then count it); whether it was logged."""
        now = self.clock()
        entry = self._reasons.get(reason)
        if entry is not None and now - entry.logged_at < self.interval_s:
            entry.held += 1
            entry.last = message
            return False
        held = entry.held if entry is not None else 0
        if held:
            assert entry is not None
            message += f" ({held} more {reason} held back in the last {now - entry.logged_at:.0f} s)"
        self.logger.warning("%s", message)
        self._reasons[reason] = _Reason(now)
        return True

    def flush(self) -> None:
        """Log the count of every reason with lines held back."""
        for reason, entry in self._reasons.items():
            if entry.held > 1:
                self.logger.warning("%s (%d more %s held back)", entry.last, entry.held - 1, reason)
            elif entry.held:
                self.logger.warning("%s", entry.last)
            entry.held = 0
