"""Requests in flight, column by column: their token pieces, where they were computed, KV moved.

The assembler learns about a request in pieces: a stretch of tokens from one instance (a *piece*),
the first iteration an instance computed for it (a *use*), KV bytes an instance moved for it (a
*move*). They are kept as numpy columns, chunk by chunk, and taken out together, vectorised,
when a batch of requests finishes: the cost is a few numpy passes per batch, not Python work per
request.

Order (the determinism contract of requests.csv): a request's token times are its pieces by time
of their first token, then instance; its instances are listed by first use, then id; its moved
bytes are summed one after the other, by instance id, then in the order each instance logged them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Finished:
    """Requests taken out of flight, by increasing request id."""

    rids: IntArray
    counts: IntArray
    """Tokens each produced."""
    times: FloatArray
    """Their token times, request after request, each in order."""
    instances: npt.NDArray[np.int32]
    """Per request, the instances that computed for it in order of first use (-1 padded)."""
    moved: FloatArray
    """KV bytes moved for each."""


def _cat(chunks: list[npt.NDArray[Any]], dtype: type) -> npt.NDArray[Any]:
    return np.concatenate(chunks) if chunks else np.empty(0, dtype=dtype)


def positions(starts: IntArray, counts: IntArray) -> IntArray:
    """``starts[i], starts[i] + 1, ..., starts[i] + counts[i] - 1`` for every i, concatenated."""
    total = int(counts.sum())
    first = np.cumsum(counts) - counts
    return np.repeat(starts, counts) + (np.arange(total) - np.repeat(first, counts))


def sequential_sums(values: FloatArray, group_sizes: IntArray) -> FloatArray:
    """Per group of consecutive values: ``((v0 + v1) + v2) + ...``, left to right, as a Python
    loop would add them (numpy's sum and reduceat add pairwise)."""
    out = np.zeros(group_sizes.size)
    starts = np.cumsum(group_sizes) - group_sizes
    for size in np.unique(group_sizes[group_sizes > 0]).tolist():
        groups = np.flatnonzero(group_sizes == size)
        rows = values[starts[groups, None] + np.arange(size)]
        out[groups] = np.cumsum(rows, axis=1)[:, -1]  # accumulate: strictly left to right
    return out


class InFlight:
    """Pieces, uses and moves of the requests still in flight (see the module docstring)."""

    def __init__(self, requests: int) -> None:
        self.tokens = np.zeros(requests, dtype=np.int64)
        """Tokens seen so far, per request."""
        self.last_s = np.full(requests, -np.inf)
        """Time of the latest token seen so far, per request."""
        self._pieces: list[tuple[IntArray, FloatArray, IntArray, IntArray, FloatArray]] = []
        """Chunks of (request, first token time, instance, length) per piece, and their times."""
        self._uses: list[tuple[IntArray, IntArray, FloatArray]] = []
        self._moves: list[tuple[IntArray, IntArray, FloatArray]] = []
        self._pick = np.zeros(requests, dtype=bool)

    def add_pieces(self, rids: IntArray, iid: int, counts: IntArray, times: FloatArray) -> None:
        """Pieces of one instance: request ``rids[j]`` produced ``counts[j]`` tokens, whose times
        follow one another in ``times``."""
        ends = np.cumsum(counts) - 1
        np.add.at(self.tokens, rids, counts)
        np.maximum.at(self.last_s, rids, times[ends])
        iids = np.full(rids.size, iid, dtype=np.int64)
        self._pieces.append((rids, times[ends - counts + 1], iids, counts, times))

    def add_uses(self, rids: IntArray, iid: int, starts: FloatArray) -> None:
        self._uses.append((rids, np.full(rids.size, iid, dtype=np.int64), starts))

    def add_moves(self, rids: IntArray, iid: int, nbytes: FloatArray) -> None:
        self._moves.append((rids, np.full(rids.size, iid, dtype=np.int64), nbytes))

    def take(self, rids: IntArray) -> Finished:
        """Take requests ``rids`` (increasing) out of flight, with everything known about them."""
        pick = self._pick
        pick[rids] = True
        try:
            times, counts = self._take_pieces(rids, pick)
            instances = self._take_uses(rids, pick)
            moved = self._take_moves(rids, pick)
        finally:
            pick[rids] = False
        return Finished(rids, counts, times, instances, moved)

    def _take_pieces(self, rids: IntArray, pick: npt.NDArray[np.bool_]) -> tuple[FloatArray, IntArray]:
        p = self._pieces
        rid, t0, iid, count = (
            _cat([c[k] for c in p], t) for k, t in enumerate((np.int64, float, np.int64, np.int64))
        )
        times = _cat([c[4] for c in p], float)
        start = np.cumsum(count) - count
        mine = pick[rid]
        keep = ~mine
        self._pieces = [
            (rid[keep], t0[keep], iid[keep], count[keep], times[positions(start[keep], count[keep])])
        ]
        order = np.flatnonzero(mine)
        order = order[np.lexsort((iid[order], t0[order], rid[order]))]
        taken = times[positions(start[order], count[order])]
        per_request = np.bincount(
            np.searchsorted(rids, rid[order]), weights=count[order], minlength=rids.size
        )
        return taken, per_request.astype(np.int64)

    def _take_uses(self, rids: IntArray, pick: npt.NDArray[np.bool_]) -> npt.NDArray[np.int32]:
        rid, iid, t = (_cat([c[k] for c in self._uses], d) for k, d in enumerate((np.int64, np.int64, float)))
        mine = pick[rid]
        keep = ~mine
        self._uses = [(rid[keep], iid[keep], t[keep])]
        rid, iid, t = rid[mine], iid[mine], t[mine]
        # The first use of each (request, instance), then the instances of each request by it.
        o = np.lexsort((t, iid, rid))
        rid, iid, t = rid[o], iid[o], t[o]
        first = np.ones(rid.size, dtype=bool)
        first[1:] = (rid[1:] != rid[:-1]) | (iid[1:] != iid[:-1])
        rid, iid, t = rid[first], iid[first], t[first]
        o = np.lexsort((iid, t, rid))
        rid, iid = rid[o], iid[o]
        row = np.searchsorted(rids, rid)
        rank = np.arange(rid.size) - np.searchsorted(rid, rid)
        out = np.full((rids.size, int(rank.max()) + 1 if rank.size else 1), -1, dtype=np.int32)
        out[row, rank] = iid
        return out

    def _take_moves(self, rids: IntArray, pick: npt.NDArray[np.bool_]) -> FloatArray:
        rid, iid, nbytes = (
            _cat([c[k] for c in self._moves], d) for k, d in enumerate((np.int64, np.int64, float))
        )
        mine = pick[rid]
        keep = ~mine
        self._moves = [(rid[keep], iid[keep], nbytes[keep])]
        o = np.flatnonzero(mine)
        o = o[np.lexsort((iid[o], rid[o]))]  # stable: each instance's log order is kept
        sizes = np.bincount(np.searchsorted(rids, rid[o]), minlength=rids.size)
        return sequential_sums(nbytes[o], sizes)
