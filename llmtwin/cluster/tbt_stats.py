"""Per-request statistics of the gaps between tokens, for many requests at once.

Requests with the same number of gaps form one ``(requests, gaps)`` matrix, reduced row by row
with numpy: a handful of numpy calls per distinct length instead of several per request. Every
figure is bit-identical to what ``numpy.mean``, ``numpy.percentile`` (default ``linear``
method) and ``max`` give for one request's gaps alone: a row reduction of a C-contiguous matrix
runs the same (pairwise) summation as a 1-D array of that length, and :func:`lerp_percentile`
repeats numpy's interpolation expression exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

REQUEST_PERCENTILES = (90.0, 99.0)
"""Percentiles of each request's own gaps (requests.csv's tbt_p90_s and tbt_p99_s)."""


@dataclass(frozen=True, slots=True)
class GapStats:
    """Per request (in the order given): mean, p90, p99 and max gap, seconds (NaN: fewer than
    two tokens), and the sum of its gaps."""

    mean: FloatArray
    p90: FloatArray
    p99: FloatArray
    max: FloatArray
    total: FloatArray
    """Sum of each request's gaps (0 without gaps); pooled means are built from these."""
    pooled: FloatArray
    """Every gap of every request (request by request)."""


def lerp_percentile(sorted_rows: FloatArray, n: int, q: float) -> FloatArray:
    """Percentile ``q`` (0..100) of each row of ``sorted_rows`` (rows of ``n`` values, partitioned
    at the needed ranks), exactly as ``numpy.percentile(row, q)``: virtual index ``(n - 1) * q /
    100``, then ``a + (b - a) * g`` (``b - (b - a) * (1 - g)`` when ``g >= 0.5``)."""
    vi = (n - 1) * np.true_divide(np.array([q]), 100)
    lo = int(np.floor(vi)[0])
    if lo >= n - 1:
        return sorted_rows[:, n - 1].copy()
    g = vi - np.floor(vi)
    a, b = sorted_rows[:, lo], sorted_rows[:, lo + 1]
    d = b - a
    out: FloatArray = np.where(g >= 0.5, b - d * (1 - g), a + d * g)
    return out


def _ranks(n: int) -> list[int]:
    """The order statistics :func:`lerp_percentile` reads for the request percentiles."""
    out = {n - 1}
    for q in REQUEST_PERCENTILES:
        lo = int(np.floor((n - 1) * np.true_divide(np.array([q]), 100))[0])
        out.update((lo, min(lo + 1, n - 1)))
    return sorted(out)


def gap_stats(times: FloatArray, counts: IntArray) -> GapStats:
    """Statistics of the gaps of requests whose token times are concatenated in ``times``
    (``counts[i]`` tokens for request ``i``; each request's times in order)."""
    m = counts.size
    starts = np.zeros(m, dtype=np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    gaps_all = np.diff(times)
    within = np.ones(gaps_all.size, dtype=bool)
    # The step from one request's last token to the next one's first is no gap.
    within[starts[(starts > 0) & (starts < times.size)] - 1] = False
    out = GapStats(
        np.full(m, np.nan),
        np.full(m, np.nan),
        np.full(m, np.nan),
        np.full(m, np.nan),
        np.zeros(m),
        gaps_all[within],
    )
    if m == 0:
        return out
    n_gaps = counts - 1
    order = np.argsort(n_gaps, kind="stable")
    lengths, first = np.unique(n_gaps[order], return_index=True)
    bounds = [*first.tolist(), m]
    for k, n in enumerate(lengths.tolist()):
        if n < 1:
            continue
        rows = order[bounds[k] : bounds[k + 1]]
        g = gaps_all[starts[rows, None] + np.arange(n)]
        out.mean[rows] = g.mean(axis=1)
        out.total[rows] = g.sum(axis=1)
        part = np.partition(g, _ranks(n), axis=1)
        out.p90[rows] = lerp_percentile(part, n, REQUEST_PERCENTILES[0])
        out.p99[rows] = lerp_percentile(part, n, REQUEST_PERCENTILES[1])
        out.max[rows] = part[:, n - 1]
    return out
