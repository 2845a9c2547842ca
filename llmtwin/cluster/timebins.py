"""Bounded summaries of an instance's timelines for plotting: a fixed number of time bins whose
width doubles (neighbours merged) whenever the run outgrows them.

A run's KV and role timelines grow with every batch change; a plot cannot show more than about
one change per pixel anyway. :class:`MaxBins` keeps, per bin, the first time and the largest value
of each series (an envelope that keeps peaks); :class:`OccupancyBins` keeps the seconds spent in
each role per bin. Bin edges are multiples of a power-of-two width, so binning a point directly at
the final width gives the same bin as binning it early and merging: the summaries depend only on
the points, not on when they were added.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

BINS = 1024
"""Bins per timeline: about one per pixel of the plots."""

FIRST_WIDTH_S = 2.0**-6
"""Starting bin width, seconds (a power of two, so every width is exact)."""


class _Bins:
    def __init__(self, bins: int, width_s: float) -> None:
        if bins < 2 or bins % 2:
            raise ValueError("bins must be an even number >= 2")
        self.bins = bins
        self.width_s = width_s

    def _fit(self, t_max: float) -> None:
        while t_max >= self.bins * self.width_s:
            self._merge()
            self.width_s *= 2.0

    def _merge(self) -> None:
        raise NotImplementedError

    def index(self, t: FloatArray) -> IntArray:
        return np.floor(t / self.width_s).astype(np.int64)

    def edges(self) -> FloatArray:
        return np.arange(self.bins + 1, dtype=np.float64) * self.width_s


class MaxBins(_Bins):
    """Per bin: the first time a point fell in it and each series' largest value there."""

    def __init__(self, series: int, bins: int = BINS, width_s: float = FIRST_WIDTH_S) -> None:
        super().__init__(bins, width_s)
        self.first_t = np.full(bins, np.inf)
        self.peak = np.full((series, bins), -np.inf)

    def _merge(self) -> None:
        half = self.bins // 2
        self.first_t[:half] = self.first_t.reshape(half, 2).min(axis=1)
        self.first_t[half:] = np.inf
        self.peak[:, :half] = self.peak.reshape(self.peak.shape[0], half, 2).max(axis=2)
        self.peak[:, half:] = -np.inf

    def add(self, t: FloatArray, values: FloatArray) -> None:
        """Points at times ``t`` (>= 0) with ``values[s]`` for each series ``s``."""
        if t.size == 0:
            return
        self._fit(float(t.max()))
        idx = self.index(t)
        np.minimum.at(self.first_t, idx, t)
        for s in range(self.peak.shape[0]):
            np.maximum.at(self.peak[s], idx, values[s])

    def points(self) -> tuple[FloatArray, FloatArray]:
        """(first time, peaks ``[series, point]``) of the bins that hold a point, in time order."""
        used = np.isfinite(self.first_t)
        return self.first_t[used], self.peak[:, used]


class OccupancyBins(_Bins):
    """Per bin: seconds spent in each state (roles), from stretches ``[t0, t1)``."""

    def __init__(self, bins: int = BINS, width_s: float = FIRST_WIDTH_S) -> None:
        super().__init__(bins, width_s)
        self.states: list[str] = []
        self.seconds = np.zeros((0, bins))

    def _merge(self) -> None:
        half = self.bins // 2
        merged = self.seconds.reshape(len(self.states), half, 2).sum(axis=2)
        self.seconds[:, :half] = merged
        self.seconds[:, half:] = 0.0

    def _state(self, name: str) -> int:
        if name not in self.states:
            self.states.append(name)
            self.seconds = np.vstack([self.seconds, np.zeros((1, self.bins))])
        return self.states.index(name)

    def add(self, t0: FloatArray, t1: FloatArray, states: list[str]) -> None:
        """Stretches: state ``states[i]`` held over ``[t0[i], t1[i])``."""
        keep = t1 > t0
        if not keep.any():
            return
        t0, t1 = t0[keep], t1[keep]
        rows = np.array([self._state(s) for s, k in zip(states, keep.tolist(), strict=True) if k])
        self._fit(float(t1.max()))
        w = self.width_s
        b0 = self.index(t0)
        b1 = np.minimum(self.index(t1), self.bins - 1)
        same = b0 == b1
        np.add.at(self.seconds, (rows[same], b0[same]), (t1 - t0)[same])
        d = ~same
        rows, b0, b1, t0, t1 = rows[d], b0[d], b1[d], t0[d], t1[d]
        np.add.at(self.seconds, (rows, b0), (b0 + 1) * w - t0)
        np.add.at(self.seconds, (rows, b1), t1 - b1 * w)
        full = np.zeros((len(self.states), self.bins + 1))
        np.add.at(full, (rows, b0 + 1), 1.0)
        np.add.at(full, (rows, b1), -1.0)
        self.seconds += np.cumsum(full, axis=1)[:, : self.bins] * w

    def stretches(self, end_s: float) -> list[tuple[float, float, str]]:
        """(start s, duration s, state): each bin shown in the state it spent most time in,
        neighbours in the same state merged, clipped to ``end_s``."""
        if not self.states:
            return []
        busy = self.seconds.max(axis=0) > 0
        top = np.where(busy, self.seconds.argmax(axis=0), -1)
        edges = self.edges()
        out: list[tuple[float, float, str]] = []
        k = 0
        while k < self.bins:
            if top[k] < 0:
                k += 1
                continue
            j = k
            while j + 1 < self.bins and top[j + 1] == top[k]:
                j += 1
            start, stop = float(edges[k]), min(float(edges[j + 1]), end_s)
            if stop > start:
                out.append((start, stop - start, self.states[int(top[k])]))
            k = j + 1
        return out
