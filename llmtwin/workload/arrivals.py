"""Arrival processes: when requests reach the cluster, in virtual seconds from 0.

Every process puts its first arrival at 0 so that a run starts with work, and answers two
questions: the first ``count`` arrival times, or every arrival before ``duration_s``. Both come
from the same sequence of draws, so ``within(d)`` is a prefix of ``first(n)`` for a large n.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from llmtwin.errors import ConfigurationError
from llmtwin.workload.traces import FloatArray

ARRIVAL_KINDS = ("poisson", "gamma", "trace")


class ArrivalProcess(Protocol):
    """A source of sorted arrival times, seconds, starting at 0."""

    def first(self, count: int) -> FloatArray:
        """The first ``count`` arrival times."""
        ...

    def within(self, duration_s: float) -> FloatArray:
        """Every arrival time in ``[0, duration_s)``."""
        ...


class RenewalArrivals:
    """Independent, identically distributed gaps with mean ``1 / rate_rps``.

    ``cv`` is the gaps' coefficient of variation (std / mean): 1 is a Poisson process
    (exponential gaps), above 1 is burstier, below 1 more regular. Gaps are Gamma-distributed with
    shape ``1 / cv**2``, which is the exponential distribution at ``cv = 1`` (BurstGPT fits Gamma
    inter-arrivals to real LLM traffic).
    """

    def __init__(self, rng: np.random.Generator, rate_rps: float, cv: float = 1.0) -> None:
        if rate_rps <= 0 or cv <= 0:
            raise ConfigurationError(f"arrival rate and CV must be > 0, got rate {rate_rps}, cv {cv}")
        self._rng = rng
        self.rate_rps = rate_rps
        self.cv = cv

    def _gaps(self, count: int) -> FloatArray:
        mean_s = 1.0 / self.rate_rps
        if self.cv == 1.0:
            return self._rng.exponential(mean_s, size=count)
        shape = 1.0 / self.cv**2
        return self._rng.gamma(shape, mean_s / shape, size=count)

    def first(self, count: int) -> FloatArray:
        if count <= 0:
            return np.zeros(0)
        return np.concatenate(([0.0], np.cumsum(self._gaps(count - 1))))

    def within(self, duration_s: float) -> FloatArray:
        if duration_s <= 0:
            return np.zeros(0)
        # Draw gaps in chunks of the expected remaining count (plus slack) until past the end;
        # numpy's generators draw element by element, so the chunking does not change the values.
        chunks: list[FloatArray] = [np.zeros(1)]
        t = 0.0
        while t < duration_s:
            expected = (duration_s - t) * self.rate_rps
            gaps = self._gaps(int(expected + 4.0 * np.sqrt(expected + 1.0) * max(self.cv, 1.0)) + 16)
            times = t + np.cumsum(gaps)
            chunks.append(times)
            t = float(times[-1])
        times = np.concatenate(chunks)
        return times[times < duration_s]


class ReplayArrivals:
    """A trace's own arrival times, with gaps divided by ``time_scale`` (2 = twice the rate)."""

    def __init__(self, trace_arrival_s: FloatArray, time_scale: float = 1.0) -> None:
        if time_scale <= 0:
            raise ConfigurationError(f"time_scale must be > 0, got {time_scale}")
        self._times: FloatArray = (trace_arrival_s - trace_arrival_s[0]) / time_scale

    def __len__(self) -> int:
        return len(self._times)

    def first(self, count: int) -> FloatArray:
        if count > len(self._times):
            raise ConfigurationError(f"asked for {count} requests but the trace has only {len(self._times)}")
        return self._times[:count].copy()

    def within(self, duration_s: float) -> FloatArray:
        return self._times[self._times < duration_s].copy()

    def all(self) -> FloatArray:
        return self._times.copy()
