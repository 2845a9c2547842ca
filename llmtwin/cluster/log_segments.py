"""The engine log's segments read as arrays, clipped to the iterations that start before a time.

An engine logs runs of identical iterations as segments (first iteration, count, anchor
iteration and time, duration; ``engine_log.py``); :func:`read_segments` turns the ones an
observer has not read yet into :class:`Segments`, and :func:`starts_before` counts, in closed
form then corrected for rounding, the iterations of one segment that start before a time.
Pure reads: the log is never changed here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from llmtwin.arrays import FloatArray, IntArray
from llmtwin.cluster.engine_log import EngineLog


@dataclass(frozen=True, slots=True)
class Segments:
    """The log's segments from a position on, as arrays, clipped to the iterations observed."""

    it: IntArray
    """First iteration of each segment."""
    lo: IntArray
    """First observed iteration of each segment."""
    n: IntArray
    """Observed iterations of each segment (0: none)."""
    anchor_it: IntArray
    anchor_t: FloatArray
    dt: FloatArray
    decode: IntArray
    pseqs: IntArray
    ptokens: IntArray
    role: list[str]

    def ends(self, its: IntArray) -> FloatArray:
        """End time of each iteration (the engine's and the assembler's expression, so the
        floats are the same as in the results)."""
        s = np.searchsorted(self.it, its, side="right") - 1
        m = (its - self.anchor_it[s]).astype(np.float64)
        out: FloatArray = self.anchor_t[s] + (m + 1.0) * self.dt[s]
        return out


def starts_before(t: float, lo: int, hi: int, anchor_it: int, anchor_t: float, dt: float) -> int:
    """How many of iterations ``lo .. hi-1`` (of one segment) start before ``t``."""
    n = hi - lo
    if n <= 0 or anchor_t + (lo - anchor_it) * dt >= t:
        return 0
    if math.isinf(t):
        return n
    c = min(n, max(1, math.ceil((t - anchor_t) / dt) + anchor_it - lo)) if dt > 0 else n
    while c > 1 and anchor_t + (lo + c - 1 - anchor_it) * dt >= t:
        c -= 1
    while c < n and anchor_t + (lo + c - anchor_it) * dt < t:
        c += 1
    return c


def read_segments(log: EngineLog, start: int, j: int, t: float) -> Segments:
    """The log's segments from the ``start``-th on (the first unread committed one; projected ones
    included), each clipped to the iterations from ``j`` on that start before ``t``."""
    anchor_it = np.asarray(log.seg_anchor_it[start:], dtype=np.int64)
    anchor_t = np.asarray(log.seg_anchor_t[start:], dtype=np.float64)
    dt = np.asarray(log.seg_dt[start:], dtype=np.float64)
    first = np.asarray(log.seg_it[start:], dtype=np.int64)
    k = np.asarray(log.seg_k[start:], dtype=np.int64)
    lo = np.maximum(first, j)
    n = np.zeros(first.size, dtype=np.int64)
    for s in range(first.size):
        hi = int(first[s] + k[s])
        if lo[s] < hi:
            c = starts_before(t, int(lo[s]), hi, int(anchor_it[s]), float(anchor_t[s]), float(dt[s]))
            n[s] = c
            if c < hi - lo[s]:
                break  # later segments start later still
    return Segments(
        first, lo, n, anchor_it, anchor_t, dt,
        np.asarray(log.seg_decode[start:], dtype=np.int64), np.asarray(log.seg_prefill_seqs[start:], dtype=np.int64),
        np.asarray(log.seg_prefill_tokens[start:], dtype=np.int64), log.seg_role[start:],
    )  # fmt: skip
