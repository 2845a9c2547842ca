"""The prefetch side stream and its share of HBM while a main-stream op runs.

HBM is one resource with streaming bandwidth ``BW`` (:attr:`~llmtwin.preserve.op_costs.OpCosts.hbm_rate`: the rate the
device model's weight-streaming kernels reach, ``hbm_bandwidth * hbm * stream_realised``). While a
main-stream op of standalone duration ``T`` that moves ``B`` bytes through HBM runs, its HBM is
busy for ``tau = B / BW`` and idle for the rest (latency, synchronisation, compute, launch).
The prefetch DMA reaches ``BW_pf = BW * prefetch_bandwidth_fraction``. Two contention models:

``idle_only``
    The main op's requests are served first; the prefetch fills the idle time. The op keeps its
    duration ``T``; the prefetch moves ``BW_pf * (T - tau)`` bytes during it.
``shared``
    Both streams get half of HBM while both move data. The op's HBM phase takes ``2 tau`` instead
    of ``tau``, so the op lasts ``T + tau``, and the prefetch moves at ``BW_pf`` averaged over the
    op: ``BW_pf * T`` bytes in ``T + tau``. If the side stream goes idle part-way, the stretch
    shrinks in proportion to the time it was busy.

During an allreduce ``B`` is the ring's buffer traffic, a few times the message: at decode a
few hundred kB against tens of microseconds, so nearly all of HBM is the prefetch's.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from llmtwin.preserve.config import Contention

_EPS_BYTES = 1e-3
_EPS_S = 1e-15


@dataclass(frozen=True, slots=True)
class Segment:
    """The prefetch stream's view of one main-stream op."""

    op: int
    duration_s: float
    """How long the op lasts while the side stream is busy throughout."""
    rate: float
    """Bytes/s the prefetch stream moves during it."""
    stretch_s: float
    """How much longer the op is than alone if the side stream is busy throughout."""

    @property
    def capacity_bytes(self) -> float:
        return self.duration_s * self.rate


def segment(
    op: int, time_s: float, hbm_bytes: float, hbm_rate: float, prefetch_rate: float, contention: Contention
) -> Segment:
    """The side stream's rate during a main-stream op of ``time_s`` moving ``hbm_bytes``."""
    if time_s <= 0:
        return Segment(op, 0.0, 0.0, 0.0)
    tau = min(time_s, hbm_bytes / hbm_rate) if hbm_rate > 0 else time_s
    if contention == "idle_only":
        return Segment(op, time_s, prefetch_rate * (time_s - tau) / time_s, 0.0)
    return Segment(op, time_s + tau, prefetch_rate * time_s / (time_s + tau), tau)


class WindowChannel:
    """A cursor over a window's segments: the planner books prefetch ops on it one by one."""

    def __init__(self, segments: Sequence[Segment]) -> None:
        self.segments = tuple(segments)
        self._seg = 0
        self._offset = 0.0
        self._elapsed = 0.0

    @property
    def window_s(self) -> float:
        return sum(s.duration_s for s in self.segments)

    @property
    def window_bytes(self) -> float:
        """Bytes the side stream could move over the whole window (no per-op overhead)."""
        return sum(s.capacity_bytes for s in self.segments)

    @property
    def elapsed_s(self) -> float:
        """Side-stream time booked so far, from the window's start."""
        return self._elapsed

    def stretch_s(self) -> float:
        """Main-stream delay the booked prefetches cause (``shared`` contention only)."""
        total = 0.0
        for i, s in enumerate(self.segments):
            if i < self._seg:
                total += s.stretch_s
            elif i == self._seg and s.duration_s > 0:
                total += s.stretch_s * self._offset / s.duration_s
        return total

    def bytes_after(self, overhead_s: float) -> float:
        """Bytes one more prefetch op could move before the window ends, after its overhead."""
        skip = overhead_s
        total = 0.0
        for i in range(self._seg, len(self.segments)):
            s = self.segments[i]
            left = s.duration_s - (self._offset if i == self._seg else 0.0)
            if skip >= left:
                skip -= left
                continue
            total += (left - skip) * s.rate
            skip = 0.0
        return total

    def take(self, overhead_s: float, nbytes: float) -> tuple[float, float, float]:
        """Book one prefetch op: ``overhead_s`` then up to ``nbytes``. Returns (bytes moved,
        start, end) with times from the window's start."""
        start = self._elapsed
        self._advance_time(overhead_s)
        moved = 0.0
        while moved < nbytes - _EPS_BYTES and self._seg < len(self.segments):
            s = self.segments[self._seg]
            left = s.duration_s - self._offset
            if s.rate <= 0 or left <= _EPS_S:
                self._next_segment(left)
                continue
            dt = min(left, (nbytes - moved) / s.rate)
            moved += dt * s.rate
            self._offset += dt
            self._elapsed += dt
            if self._offset >= s.duration_s - _EPS_S:
                self._next_segment(0.0)
        return moved, start, self._elapsed

    def _advance_time(self, dt: float) -> None:
        while dt > _EPS_S and self._seg < len(self.segments):
            left = self.segments[self._seg].duration_s - self._offset
            step = min(dt, left)
            self._offset += step
            self._elapsed += step
            dt -= step
            if self._offset >= self.segments[self._seg].duration_s - _EPS_S:
                self._next_segment(0.0)

    def _next_segment(self, skipped_s: float) -> None:
        self._elapsed += max(0.0, skipped_s)
        self._seg += 1
        self._offset = 0.0


@dataclass(slots=True)
class Transfer:
    """Progress of one prefetch op on the side stream during a timeline simulation."""

    key: int
    overhead_left_s: float
    bytes_left: float
    start_s: float | None = None
    end_s: float | None = None


def run_side_stream(
    queue: deque[Transfer], t0: float, duration_s: float, rate: float, until: int | None = None
) -> float:
    """Advance the FIFO side stream from time ``t0`` for up to ``duration_s`` at ``rate`` bytes/s.

    Stops early when the queue empties or when transfer ``until`` completes. Finished transfers
    are removed with ``end_s`` set. Returns the time the stream was busy (overheads and moving
    bytes; a stall at zero rate is not busy)."""
    t = 0.0
    while queue and t < duration_s - _EPS_S:
        x = queue[0]
        if x.start_s is None:
            x.start_s = t0 + t
        if x.overhead_left_s > 0:
            dt = min(x.overhead_left_s, duration_s - t)
            x.overhead_left_s -= dt
            t += dt
            if x.overhead_left_s > _EPS_S:
                break
            x.overhead_left_s = 0.0
        if x.bytes_left > _EPS_BYTES:
            if rate <= 0:
                break
            dt = min(x.bytes_left / rate, duration_s - t)
            x.bytes_left -= dt * rate
            t += dt
            if x.bytes_left > _EPS_BYTES:
                break
        x.bytes_left = 0.0
        x.end_s = t0 + t
        queue.popleft()
        if until is not None and x.key == until:
            break
    return t
