"""One instance's statistics, accumulated from its logs chunk by chunk as the run goes.

The engine logs segments of identical iterations (see ``engine_log.py``); the assembler hands
them over in chunks, in order. This keeps what the instance's record needs and nothing that grows
with the run: sums (exactly rounded, so chunking never changes a figure), counts, a batch-size
histogram, KV peaks and the time integral of KV use, and bounded plot summaries. Iteration times
are kept only for the iterations a request still running may yet report tokens from.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from llmtwin.cluster.exact_sum import ExactSum
from llmtwin.cluster.messages import InstanceExport
from llmtwin.cluster.records import InstanceRecord
from llmtwin.cluster.timebins import MaxBins, OccupancyBins

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def _i64(values: list[int]) -> IntArray:
    return np.asarray(values, dtype=np.int64)


def _f64(values: list[float] | list[int]) -> FloatArray:
    return np.asarray(values, dtype=np.float64)


@dataclass(slots=True)
class KvUse:
    """KV bytes per device over time: peaks, time integral over the run's span, plot envelope.

    The timeline is piecewise constant (each point holds until the next). The integral is taken
    over [start_s, end_s]; ``end_s`` (the last completion) is known only at the end, so an
    interval is integrated once it ends before ``settled_s``, a time the run's end cannot precede.
    """

    start_s: float
    detail: bool
    peak_primary: float = 0.0
    peak_redundant: float = 0.0
    peak_total: float = 0.0
    integral: ExactSum = field(default_factory=ExactSum)
    pending_t: FloatArray = field(default_factory=lambda: np.empty(0))
    pending_total: FloatArray = field(default_factory=lambda: np.empty(0))
    envelope: MaxBins = field(default_factory=lambda: MaxBins(2))
    timeline: list[tuple[float, float, float]] = field(default_factory=list)
    points: int = 0

    def add(self, t: FloatArray, primary: FloatArray, redundant: FloatArray, settled_s: float) -> None:
        if t.size == 0:
            return
        total = primary + redundant
        self.points += int(t.size)
        self.peak_primary = max(self.peak_primary, float(primary.max()))
        self.peak_redundant = max(self.peak_redundant, float(redundant.max()))
        self.peak_total = max(self.peak_total, float(total.max()))
        self.envelope.add(t, np.vstack([primary, total]))
        if self.detail:
            self.timeline.extend(zip(t.tolist(), primary.tolist(), redundant.tolist(), strict=True))
        self.pending_t = np.concatenate([self.pending_t, t])
        self.pending_total = np.concatenate([self.pending_total, total])
        # Intervals [t_i, t_i+1) with t_i+1 <= settled_s: clipping at the end cannot change them.
        n = int(np.searchsorted(self.pending_t, settled_s, side="right"))
        if n >= 2:
            bounds = np.maximum(self.pending_t[:n], self.start_s)
            self.integral.add(self.pending_total[: n - 1] * np.diff(bounds))
            self.pending_t = self.pending_t[n - 1 :]
            self.pending_total = self.pending_total[n - 1 :]

    def finish(self, end_s: float) -> tuple[float, float, float, float]:
        """(peak primary, peak redundant, peak total, time-weighted mean total) over the span."""
        if self.points == 0:
            return 0.0, 0.0, 0.0, 0.0
        peaks = (self.peak_primary, self.peak_redundant, self.peak_total)
        if end_s <= self.start_s:
            return (*peaks, float(self.pending_total[-1]))
        bounds = np.clip(np.append(self.pending_t, end_s), self.start_s, end_s)
        self.integral.add(self.pending_total * np.diff(bounds))
        return (*peaks, self.integral.value / (end_s - self.start_s))


class InstanceStats:
    """Accumulates one instance's record from its log chunks (see the module docstring)."""

    def __init__(self, first: InstanceExport, start_s: float, detail: bool) -> None:
        self.iid = first.iid
        self.devices = first.devices
        self.block_bytes = first.block_bytes
        self.capacity_blocks = first.kv_capacity_blocks
        self.detail = detail
        # Segments still needed to time iterations (see prune).
        self.seg_it = np.empty(0, dtype=np.int64)
        self.seg_k = np.empty(0, dtype=np.int64)
        self.anchor_it = np.empty(0, dtype=np.int64)
        self.anchor_t = np.empty(0)
        self.dt = np.empty(0)
        self.busy: dict[str, ExactSum] = {}
        self.idle: dict[str, ExactSum] = {}
        """Per role held: seconds in the role minus the iterations run in it."""
        self.period_t: list[float] = []
        self.period_role: list[str] = []
        """Role periods that iterations still to come may fall in: the open one, and later ones
        logged ahead of their iterations."""
        self.role_changes = 0
        self.iterations = 0
        self.prefill_tokens = 0
        self.tokens = 0
        self.preemptions = 0
        self.batch_counts = np.zeros(0, dtype=np.int64)
        self.kv = KvUse(start_s, detail)
        self.roles = OccupancyBins()
        self.batch_sizes: list[int] = []
        self.role_timeline: list[tuple[float, str]] = []

    # -- iteration times ------------------------------------------------------------------------------
    def _segments_of(self, its: IntArray) -> tuple[IntArray, FloatArray]:
        """The kept segment of each iteration, and the iteration's index within its anchor's run."""
        if its.size and (self.seg_it.size == 0 or int(its.min()) < int(self.seg_it[0])):
            raise AssertionError(f"instance {self.iid}: iteration times asked for after they were dropped")
        s = np.searchsorted(self.seg_it, its, side="right") - 1
        return s, (its - self.anchor_it[s]).astype(np.float64)

    # Both with the engine's expression (anchor + m * dt), so the floats are identical.
    def starts(self, its: IntArray) -> FloatArray:
        """Start time of each of the given iterations (each must lie in a kept segment)."""
        s, m = self._segments_of(its)
        out: FloatArray = self.anchor_t[s] + m * self.dt[s]
        return out

    def ends(self, its: IntArray) -> FloatArray:
        """End time of each of the given iterations (each must lie in a kept segment)."""
        s, m = self._segments_of(its)
        out: FloatArray = self.anchor_t[s] + (m + 1.0) * self.dt[s]
        return out

    def prune(self, first_needed_it: int) -> None:
        """Forget the segments that end before iteration ``first_needed_it``."""
        keep = self.seg_it + self.seg_k > first_needed_it
        if not keep.all():
            first = int(np.argmax(keep)) if keep.any() else self.seg_it.size
            for name in ("seg_it", "seg_k", "anchor_it", "anchor_t", "dt"):
                setattr(self, name, getattr(self, name)[first:])

    # -- one chunk ------------------------------------------------------------------------------------
    def add(self, x: InstanceExport, settled_s: float) -> None:
        """A chunk of this instance's log (the next entries, in order)."""
        self._add_roles(x)
        self._add_segments(x)
        self.preemptions += len(x.preempted_rids)
        per_block = self.block_bytes
        self.kv.add(
            _f64(x.kv_t),
            _f64(x.kv_primary_blocks) * per_block,
            _f64(x.kv_redundant_blocks) * per_block,
            settled_s,
        )

    def _add_roles(self, x: InstanceExport) -> None:
        if not x.role_t:
            return
        self.role_changes += len(x.role_t)
        if self.detail:
            self.role_timeline.extend(zip(x.role_t, x.role, strict=True))
        t = [*self.period_t, *x.role_t]
        roles = [*self.period_role, *x.role]
        # The periods that just ended (the one open so far, and all new ones but the last) count
        # their whole span as time in their role.
        ended = range(max(0, len(self.period_t) - 1), len(t) - 1)
        self.roles.add(
            _f64([t[k] for k in ended]), _f64([t[k + 1] for k in ended]), [roles[k] for k in ended]
        )
        for k in ended:
            self._idle(roles[k]).add_one(t[k + 1] - t[k])
        self.period_t, self.period_role = t, roles

    def _idle(self, role: str) -> ExactSum:
        return self.idle.setdefault(role, ExactSum())

    def _add_segments(self, x: InstanceExport) -> None:
        if not x.seg_k:
            return
        k = _i64(x.seg_k)
        self.seg_it = np.concatenate([self.seg_it, _i64(x.seg_it)])
        self.seg_k = np.concatenate([self.seg_k, k])
        self.anchor_it = np.concatenate([self.anchor_it, _i64(x.seg_anchor_it)])
        self.anchor_t = np.concatenate([self.anchor_t, _f64(x.seg_anchor_t)])
        self.dt = np.concatenate([self.dt, _f64(x.seg_dt)])
        n = int(k.sum())
        its = np.repeat(_i64(x.seg_it), k) + (np.arange(n) - np.repeat(np.cumsum(k) - k, k))
        s, m = self._segments_of(its)
        at, dt = self.anchor_t[s], self.dt[s]
        start, end = at + m * dt, at + (m + 1.0) * dt
        took = end - start
        # Busy seconds by what each iteration computed (summed per iteration, so the figure does
        # not depend on how iterations were segmented).
        seg_role = np.asarray(x.seg_role)
        it_role = np.repeat(seg_role, k)
        for role in sorted(set(x.seg_role)):
            self.busy.setdefault(role, ExactSum()).add(took[it_role == role])
        # Idle seconds by the role the instance held: minus the iterations run in each period
        # (role changes happen at iteration boundaries, so every iteration lies in one period).
        period = np.searchsorted(_f64(self.period_t), start, side="right") - 1
        for p in np.unique(period).tolist():
            self._idle(self.period_role[p]).add(-took[period == p])
        last = int(period.max())
        self.period_t, self.period_role = self.period_t[last:], self.period_role[last:]
        batch = _i64(x.seg_decode) + _i64(x.seg_prefill_seqs)
        counts = np.bincount(batch, weights=k.astype(np.float64)).astype(np.int64)
        if counts.size > self.batch_counts.size:
            counts[: self.batch_counts.size] += self.batch_counts
            self.batch_counts = counts
        else:
            self.batch_counts[: counts.size] += counts
        self.iterations += n
        self.prefill_tokens += int(np.dot(_i64(x.seg_prefill_tokens), k))
        if self.detail:
            self.batch_sizes.extend(np.repeat(batch, k).tolist())

    # -- the end --------------------------------------------------------------------------------------
    def finish(self, run_end_s: float, span_end_s: float) -> InstanceRecord:
        """The record; ``run_end_s`` ends the last role period, ``span_end_s`` (last completion)
        the KV average."""
        if self.period_t:
            last_t, last_role = self.period_t[-1], self.period_role[-1]
            end = max(run_end_s, last_t)
            self._idle(last_role).add_one(end - last_t)
            self.roles.add(_f64([last_t]), _f64([end]), [last_role])
        busy = {role: s.value for role, s in sorted(self.busy.items())}
        idle_by_role = {role: max(0.0, s.value) for role, s in sorted(self.idle.items())}
        kv = self.kv.finish(span_end_s)
        env_t, env_peaks = self.kv.envelope.points()
        return InstanceRecord(
            iid=self.iid,
            devices=self.devices,
            busy_s=busy,
            idle_s=max(0.0, run_end_s - sum(busy.values())),
            idle_s_by_role=idle_by_role,
            iterations=self.iterations,
            role_switches=max(0, self.role_changes - 1),
            batch_counts=self.batch_counts.tolist(),
            kv_capacity_bytes=self.capacity_blocks * self.block_bytes,
            kv_peak_primary_bytes=kv[0],
            kv_peak_redundant_bytes=kv[1],
            kv_peak_total_bytes=kv[2],
            kv_mean_total_bytes=kv[3],
            tokens_generated=self.tokens,
            prefill_tokens=self.prefill_tokens,
            preemptions=self.preemptions,
            kv_envelope=tuple(zip(env_t.tolist(), env_peaks[0].tolist(), env_peaks[1].tolist(), strict=True)),
            role_stretches=tuple(self.roles.stretches(run_end_s)),
            batch_sizes=self.batch_sizes,
            kv_timeline=self.kv.timeline,
            role_timeline=self.role_timeline,
        )
