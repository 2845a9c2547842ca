"""A running sum of floats that is exactly rounded whenever it is read.

Results are assembled as a run goes (in chunks, as instances' logs are drained) and, over NATS,
from one export per instance at the end. A plain float sum depends on the order and grouping of
its terms, so the same run would give figures that differ in the last digits depending on how it
was cut into chunks. This sum does not: :attr:`ExactSum.value` is the exact mathematical sum of
every value added, rounded once (what :func:`math.fsum` returns for all of them at once).

How: every finite double is ``m * 2**(e - 53)`` with an integer ``|m| < 2**53``
(:func:`numpy.frexp`). The total is kept as one Python integer in units of ``2**-1126`` (the
smallest such unit). A chunk is added with a few vectorised passes: split each ``m`` into 26-bit
halves, sum the halves per exponent (exact in float64: every partial sum stays below ``2**53``),
then shift and add those few sums into the integer.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

_SCALE_BITS = 1126
"""The total is an integer multiple of 2**-1126: the unit of the smallest subnormal's mantissa."""
_HALF = 26
_CHUNK = 1 << 26
"""Values summed per pass: 2**26 halves below 2**27 each keep every float64 partial sum exact."""


class ExactSum:
    """Sum of every float added, exactly rounded (independent of order and chunking)."""

    __slots__ = ("_total",)

    def __init__(self) -> None:
        self._total = 0
        """The exact sum, in units of 2**-1126."""

    def add(self, values: npt.NDArray[np.float64] | Iterable[float]) -> None:
        a = np.asarray(values if isinstance(values, np.ndarray) else list(values), dtype=np.float64)
        if not np.all(np.isfinite(a)):
            raise ValueError("ExactSum takes finite values only")
        for lo in range(0, a.size, _CHUNK):
            self._add_chunk(a[lo : lo + _CHUNK])

    def _add_chunk(self, a: npt.NDArray[np.float64]) -> None:
        m, e = np.frexp(a)
        mant = (m * float(1 << 53)).astype(np.int64)
        hi = mant >> _HALF
        low = mant - (hi << _HALF)
        e0 = int(e.min()) if e.size else 0
        idx = (e - e0).astype(np.int64)
        hi_sums = np.bincount(idx, weights=hi.astype(np.float64))
        low_sums = np.bincount(idx, weights=low.astype(np.float64))
        for k in np.flatnonzero((hi_sums != 0) | (low_sums != 0)).tolist():
            shift = e0 + k - 53 + _SCALE_BITS
            self._total += ((int(hi_sums[k]) << _HALF) + int(low_sums[k])) << shift

    def add_one(self, value: float) -> None:
        self.add(np.array([value], dtype=np.float64))

    @property
    def value(self) -> float:
        return self._total / (1 << _SCALE_BITS)
