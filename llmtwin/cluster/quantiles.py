"""Quantiles of a stream of positive values (every token gap of a run): exact, or a bounded sketch.

A run of a million requests has a few hundred million token gaps: too many to keep. Whether they
are kept is decided before the run, from the tokens it will generate:

* **exact** (at most :data:`EXACT_LIMIT` values): the values are kept (8 bytes each) and the
  percentiles are ``numpy.percentile``'s, bit for bit.
* **sketch** (more): a log-bucketed histogram, in the manner of DDSketch. A bucket holds the
  values that share a float64 exponent and the top :data:`SKETCH_BITS` bits of the mantissa, so
  its width is at most ``2**-SKETCH_BITS`` of its values; a value is read back as the middle of
  its bucket, within a relative ``2**-(SKETCH_BITS + 1)`` (0.0122%) of the truth. Each
  order statistic is therefore that close, and so is every percentile interpolated between two
  of them. Memory: one count per bucket in use (about 250 kB per 10x range of values).

Count, minimum and maximum are exact in both modes.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

EXACT_LIMIT = 1 << 24
"""Most values kept exactly (128 MiB); w1 has 2.1 million token gaps, w1 at 50,000 requests 10.5."""

SKETCH_BITS = 12
"""Mantissa bits that tell sketch buckets apart: relative error <= 2**-13."""

_SHIFT = 52 - SKETCH_BITS
_TINY = np.float64(2.0**-60)
"""Values below this (and zero) go to its bucket (a token gap never comes near it)."""


def _key(values: FloatArray) -> npt.NDArray[np.int64]:
    """Bucket key: monotone in the value for positive floats (their bit patterns are)."""
    return np.maximum(values, _TINY).view(np.int64) >> _SHIFT


def _mid(keys: npt.NDArray[np.int64]) -> FloatArray:
    lo = (keys << _SHIFT).view(np.float64)
    hi = ((keys + 1) << _SHIFT).view(np.float64)
    return lo + (hi - lo) / 2


class StreamQuantiles:
    """Count, min, max and percentiles of the values added (see the module docstring)."""

    def __init__(self, exact: bool) -> None:
        self.exact = exact
        self.count = 0
        self.min = np.inf
        self.max = -np.inf
        self._chunks: list[FloatArray] = []
        self._key0 = 0
        self._counts = np.zeros(0, dtype=np.int64)

    @classmethod
    def for_count(cls, expected: int) -> StreamQuantiles:
        """Exact when at most :data:`EXACT_LIMIT` values are expected, else a sketch."""
        return cls(exact=expected <= EXACT_LIMIT)

    def add(self, values: FloatArray) -> None:
        if values.size == 0:
            return
        self.count += int(values.size)
        self.min = min(self.min, float(values.min()))
        self.max = max(self.max, float(values.max()))
        if self.exact:
            self._chunks.append(np.array(values, dtype=np.float64))
            return
        keys = _key(values)
        lo, hi = int(keys.min()), int(keys.max())
        if self._counts.size == 0:
            self._key0 = lo
        if lo < self._key0 or hi >= self._key0 + self._counts.size:
            new0 = min(lo, self._key0)
            grown = np.zeros(max(hi + 1, self._key0 + self._counts.size) - new0, dtype=np.int64)
            grown[self._key0 - new0 : self._key0 - new0 + self._counts.size] = self._counts
            self._key0, self._counts = new0, grown
        self._counts += np.bincount(keys - self._key0, minlength=self._counts.size)

    def values(self) -> FloatArray:
        """Exact mode: every value, in the order added."""
        if not self.exact:
            raise ValueError("a sketch keeps no values")
        if len(self._chunks) != 1:
            self._chunks = [np.concatenate(self._chunks) if self._chunks else np.empty(0)]
        return self._chunks[0]

    def order_statistics(self, ranks: npt.NDArray[np.int64]) -> FloatArray:
        """The values of the given 0-based ranks in sorted order (sketch: bucket middles, clamped
        to the exact minimum and maximum)."""
        if self.exact:
            return np.sort(self.values())[ranks]
        nonzero = np.flatnonzero(self._counts)
        cum = np.cumsum(self._counts[nonzero])
        where = np.searchsorted(cum, ranks, side="right")
        mids = _mid(nonzero[where] + self._key0)
        return np.clip(mids, self.min, self.max)

    def percentiles(self, qs: tuple[float, ...]) -> list[float]:
        """``numpy.percentile(values, qs)`` (default linear method); sketch: the same interpolation
        between approximate order statistics."""
        if self.count == 0:
            raise ValueError("no values")
        if self.exact:
            return [float(x) for x in np.percentile(self.values(), qs)]
        n = self.count
        vi = (n - 1) * np.true_divide(np.asarray(qs, dtype=np.float64), 100)
        lo = np.minimum(np.floor(vi).astype(np.int64), n - 1)
        hi = np.minimum(lo + 1, n - 1)
        a, b = self.order_statistics(lo), self.order_statistics(hi)
        g = vi - np.floor(vi)
        d = b - a
        return [float(x) for x in np.where(g >= 0.5, b - d * (1 - g), a + d * g)]
