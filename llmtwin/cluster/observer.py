"""What one instance did up to a window's time, read from its engine without changing it.

A device service builds one :class:`InstanceObserver` per instance it leads and, at the end of a
window (time ``T``), calls :meth:`InstanceObserver.observe`: the instance's
:class:`~llmtwin.observe.observations.InstanceWindow` (gauges at ``T``, counts since the last
call) and its :class:`~llmtwin.observe.observations.TokenPieces` (every token it produced since,
with its time, for the balancer's request tracker).

Which iterations are final: every iteration that *starts before* ``T``. No message stamped
before the window's time can arrive any more (the window protocol's causality), and a message
takes effect at the first iteration boundary at or after its time, so whatever the engine
logged for iterations starting before ``T``, committed in a step or computed ahead in its
projection, is what the run will keep (a restore re-logs them identically). Iterations are
numbered by the engine (``it``), so each is read exactly once however the log was cut into
segments. Entries without an iteration number (preemptions) are read once committed.

The observer only reads: the engine, its log (never drained in a service: ``run_scenario``,
which drains, does not use observers), the agent's KV moves, and the messages its host hands
the instance and takes from it (:meth:`received`, :meth:`sent`), which say when a request
arrives fresh (its first token comes here), arrives from elsewhere (the gap before its next
token spans two instances) or leaves. It never runs in ``llmtwin simulate``.

The log's segments are read as arrays by :mod:`llmtwin.cluster.log_segments`; how many seconds
of an iteration are allreduce, and what PRESERVE saved, come from
:mod:`llmtwin.cluster.step_breakdown`.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from llmtwin.cluster.components import Instance
from llmtwin.cluster.log_segments import Segments, read_segments
from llmtwin.cluster.messages import Dispatch, Done, Handover, KVTransfer, Preempted
from llmtwin.cluster.step_breakdown import PlanStats, StepBreakdown
from llmtwin.observe.observations import InstanceWindow, PieceKind, TokenPieces


class InstanceObserver:
    """Reads one instance's progress window by window (see the module docstring)."""

    def __init__(self, inst: Instance, plans: PlanStats | None = None) -> None:
        self.inst = inst
        eng = inst.engine
        self.step = eng.cost.step
        self.breakdown = StepBreakdown(eng.cost, plans)
        self.block_bytes = eng.B * inst.agent.ctx.kv_bytes_per_token / inst.devices
        self.kv_capacity = eng.capacity * self.block_bytes
        self.weights = self.step.weight_bytes_per_device()
        self.j = 0
        """Next iteration to observe."""
        self.h = 0.0
        """Horizon of the last record: idle time is counted up to it."""
        self.pos = [0] * 6
        """Committed log entries already read, per group (see ``engine_log.py``)."""
        self.moved = 0
        self.kv = (0, 0)
        self.roles_seen = 1
        """Role entries counted (the first is the initial role, no switch)."""
        self.in_flight = (-math.inf, 0)
        """(end, sequences) of the last iteration observed."""
        self.allreduce_share = 0.0
        """Over the iterations of the latest record that had any."""
        self.handovers = 0
        self.marks: dict[int, list[tuple[float, PieceKind]]] = {}
        """Per request: when it arrived here and how (fresh: FIRST; from elsewhere: HOP)."""
        self.prev: dict[int, float] = {}
        """Per request still here: its latest token's time."""
        self.next_kind: dict[int, PieceKind] = {}
        """Per request that arrived but has produced nothing here since: its next piece's kind."""
        self.fresh: set[int] = set()
        """New requests whose first prefill iteration has not been seen yet."""
        self.gone: set[int] = set()

    # -- what the host hands the instance, and what it sends ---------------------------------------
    def received(self, now: float, bodies: Iterable[Any]) -> None:
        """Messages the instance handles at ``now``: requests arriving."""
        for b in bodies:
            if isinstance(b, Dispatch):
                fresh = b.generated_tokens == 0
                self._mark(b.rid, now, PieceKind.FIRST if fresh else PieceKind.HOP)
                if fresh:
                    self.fresh.add(b.rid)
            elif isinstance(b, KVTransfer):
                self._mark(b.rid, now, PieceKind.HOP)
            elif isinstance(b, Handover):
                for rid in b.rids:
                    self._mark(rid, now, PieceKind.HOP)

    def sent(self, bodies: Iterable[Any]) -> None:
        """Messages the instance sent: requests handed over, finished or given up."""
        for b in bodies:
            if isinstance(b, Handover):
                self.handovers += len(b.rids)
                self.gone.update(b.rids)
            elif isinstance(b, KVTransfer):
                self.handovers += 1
                self.gone.add(b.rid)
            elif isinstance(b, Done | Preempted):
                self.gone.add(b.rid)

    def _mark(self, rid: int, now: float, kind: PieceKind) -> None:
        self.marks.setdefault(rid, []).append((now, kind))

    # -- one record ---------------------------------------------------------------------------------
    def observe(self, t: float, final: bool = False) -> tuple[InstanceWindow, TokenPieces]:
        """The record at window time ``t`` (``final``: the run ended at ``t`` and the instance has
        finished, so its whole log is committed)."""
        inst, eng, log = self.inst, self.inst.engine, self.inst.engine.log
        if log.segments != len(log.seg_k):
            raise AssertionError("an observer reads an undrained log (services only)")
        seen = inst.committed()
        if final or seen is None:
            waiting, held = len(eng.waiting), len(eng.held)
            mark: tuple[int, ...] = (len(log.seg_k), len(log.range_rid), len(log.kv_t), len(log.role_t),
                    len(log.preempted_rids), len(log.chunk_rid))  # fmt: skip
        else:
            waiting, held, mark = seen
        j0 = self.j
        seg = read_segments(eng.log, self.pos[0], self.j, math.inf if final else t)
        busy: dict[str, float] = {}
        idle_minus: dict[float, float] = {}
        allreduce = saved = prefetched = 0.0
        batch: list[tuple[float, int]] = []
        tokens: list[tuple[float, int]] = []
        last_batch = 0
        for s in np.flatnonzero(seg.n).tolist():
            n, dt, role = int(seg.n[s]), float(seg.dt[s]), seg.role[s]
            busy[role] = busy.get(role, 0.0) + n * dt
            start = float(seg.anchor_t[s] + (seg.lo[s] - seg.anchor_it[s]) * dt)
            idle_minus[start] = idle_minus.get(start, 0.0) + n * dt
            b = int(seg.decode[s] + seg.pseqs[s])
            m = int(seg.decode[s] + seg.ptokens[s])
            batch.append((float(b), n))
            tokens.append((float(m), n))
            allreduce += n * self.breakdown.allreduce_s(m)
            if seg.pseqs[s] == 0:
                more = self.breakdown.preserve(int(seg.decode[s]), dt)
                if more is not None:
                    saved, prefetched = saved + n * more[0], prefetched + n * more[1]
            self.j = int(seg.lo[s] + n)
            last_batch = b
        if self.j > j0:  # the end of the last iteration read (one lookup, not one per segment)
            self.in_flight = (float(seg.ends(np.array([self.j - 1]))[0]), last_batch)
        end, in_flight = self.in_flight
        horizon = max(t, end, self.h)
        pieces = self._pieces(j0, seg, final)
        kv, role, switches, idle = self._kv_roles(t, horizon, mark, idle_minus)
        preempted = mark[4] - self.pos[4]
        moved = float(sum(inst.agent.moved_bytes[self.moved :]))
        self.moved = len(inst.agent.moved_bytes)
        self._consume(mark, t)
        self.h = horizon
        running = in_flight if end >= t else 0  # the batch running up to t (t may end it)
        total_busy = sum(busy.values())
        if total_busy > 0:
            self.allreduce_share = allreduce / total_busy
        kv_primary, kv_redundant = kv[0] * self.block_bytes, kv[1] * self.block_bytes
        window = InstanceWindow(
            engine=inst.id,
            at_s=t,
            role=role if running else "idle",
            running=running,
            waiting=waiting + held,
            kv_primary_bytes=kv_primary,
            kv_redundant_bytes=kv_redundant,
            kv_capacity_bytes=self.kv_capacity,
            hbm_used_bytes=self.weights + kv_primary + kv_redundant,
            hbm_capacity_bytes=self.step.hw.hbm_capacity,
            l2_capacity_bytes=self.step.hw.l2_capacity,
            preserve_l2_bytes=self.breakdown.preserve_l2,
            allreduce_share=self.allreduce_share,
            iterations=self.j - j0,
            generation_tokens=len(pieces.times_s),
            preemptions=preempted,
            iteration_tokens=tuple(tokens),
            batch_sequences=tuple(batch),
            busy_s=busy,
            idle_s=idle,
            role_switches=switches,
            kv_moved_bytes=moved,
            handovers=self.handovers,
            allreduce_s=allreduce,
            preserve_prefetched_bytes=prefetched,
            preserve_saved_s=saved,
            counted_to_s=horizon,
        )
        self.handovers = 0
        return window, pieces

    def _consume(self, mark: tuple[int, ...], t: float) -> None:
        """Move past the committed entries this record has read for good. Not simply to the mark:
        an iteration starting exactly at ``t`` may be committed by a step at ``t`` and is read
        by a later record (``starts before t`` is the rule), so entries about it stay."""
        log, pos = self.inst.engine.log, self.pos
        j = self.j

        def upto(group: int, done: Callable[[int], bool]) -> int:
            k = pos[group]
            while k < mark[group] and done(k):
                k += 1
            return k

        pos[0] = upto(0, lambda k: log.seg_it[k] + log.seg_k[k] <= j)
        pos[1] = upto(1, lambda k: log.range_last[k] < j)
        pos[2] = upto(2, lambda k: log.kv_t[k] <= t)
        pos[4] = mark[4]
        pos[5] = upto(5, lambda k: log.chunk_it[k] < j)

    # -- tokens ---------------------------------------------------------------------------------------
    def _pieces(self, j0: int, seg: Segments, final: bool) -> TokenPieces:
        """The tokens of iterations ``j0 .. self.j - 1``, per request, split where it arrived."""
        eng, log = self.inst.engine, self.inst.engine.log
        b = self.pos[1]
        rid = list(log.range_rid[b:])
        first = list(log.range_first[b:])
        last = list(log.range_last[b:])
        for run in eng.running.values():  # still running: its tokens so far
            if eng.it - 1 >= run.start_it:
                rid.append(run.rid)
                first.append(run.start_it)
                last.append(eng.it - 1)
        lo = np.maximum(np.asarray(first, dtype=np.int64), j0)
        hi = np.minimum(np.asarray(last, dtype=np.int64), self.j - 1)
        keep = np.flatnonzero(lo <= hi)
        order = keep[np.lexsort((lo[keep], np.asarray(rid, dtype=np.int64)[keep]))]
        # Every token's iteration and end time in one pass (one ``ends`` call, not one per range).
        counts = hi[order] - lo[order] + 1
        starts = np.cumsum(counts) - counts
        all_its = np.repeat(lo[order] - starts, counts) + np.arange(int(counts.sum()), dtype=np.int64)
        # As lists: the loop below reads them one value at a time.
        its, times = all_its.tolist(), seg.ends(all_its).tolist()
        out = _PieceBuilder()
        by_rid: dict[int, list[tuple[int, int]]] = {}
        for p, at, n in zip(order.tolist(), starts.tolist(), counts.tolist(), strict=True):
            by_rid.setdefault(rid[p], []).append((at, at + n))
        for r in sorted(set(by_rid) | set(self.marks)):
            marks = self.marks.pop(r, [])
            for k, end in by_rid.get(r, []):  # tokens k .. end - 1, in time order
                while k < end:
                    while marks and marks[0][0] < times[k]:  # it arrived (again) before this token
                        self._restart(r, marks.pop(0)[1])
                    stop = bisect.bisect_right(times, marks[0][0], k, end) if marks else end
                    prev = self.prev.get(r)
                    kind = PieceKind.CONT if prev is not None else self.next_kind.pop(r, PieceKind.HOP)
                    out.add(r, its[k], times[k:stop], kind, prev)
                    self.prev[r] = times[stop - 1]
                    k = stop
            for _, kind in marks:  # arrived after its last token here
                self._restart(r, kind)
        for r in self.gone:  # left (or finished): a later piece here, if any, follows a hop
            self.prev.pop(r, None)
            self.next_kind.pop(r, None)
        self.gone.clear()
        self._scheduled(j0, seg, out)
        return out.build(self.inst.id, j0, self.j, final)

    def _restart(self, rid: int, kind: PieceKind) -> None:
        """The request arrived here: its next piece does not follow a token of this instance."""
        self.prev.pop(rid, None)
        self.next_kind[rid] = kind

    def _scheduled(self, j0: int, seg: Segments, out: _PieceBuilder) -> None:
        """First prefill iterations of new requests in the observed iterations."""
        log, c = self.inst.engine.log, self.pos[5]
        for rid, it in zip(log.chunk_rid[c:], log.chunk_it[c:], strict=True):
            if j0 <= it < self.j and rid in self.fresh:
                self.fresh.discard(rid)
                s = int(np.searchsorted(seg.it, it, side="right") - 1)
                out.scheduled(rid, float(seg.anchor_t[s] + (it - seg.anchor_it[s]) * seg.dt[s]))

    # -- memory and roles -------------------------------------------------------------------------------
    def _kv_roles(
        self, t: float, horizon: float, mark: tuple[int, ...], busy_from: dict[float, float]
    ) -> tuple[tuple[int, int], str, int, dict[str, float]]:
        """KV blocks in use at ``t``, the role held at ``t``, role switches since the last record,
        and idle seconds by role held in ``[previous horizon, horizon)`` (``busy_from``: busy
        seconds by the start of the iterations that were busy)."""
        log = self.inst.engine.log
        c = self.pos[2]
        upto = c + int(
            np.searchsorted(np.asarray(log.kv_t[c:], dtype=np.float64), t, side="right")
        )  # all seen
        if upto > c:
            self.kv = (log.kv_primary[upto - 1], log.kv_redundant[upto - 1])
        role_t = log.role_t
        n = bisect.bisect_left(role_t, horizon)
        switches = max(0, n - self.roles_seen)
        self.roles_seen = max(self.roles_seen, n)
        role = log.roles[max(0, bisect.bisect_right(role_t, t) - 1)] if log.roles else ""
        idle: dict[str, float] = {}
        # Busy seconds by start time, in time order (the order they were read, so each role's
        # sum adds the same numbers in the same order as a scan of every entry would).
        starts = sorted(busy_from)
        busy_s = [busy_from[at] for at in starts]
        for p in range(max(0, bisect.bisect_right(role_t, self.h) - 1), n):
            start, stop = role_t[p], role_t[p + 1] if p + 1 < n else math.inf
            held = max(0.0, min(stop, horizon) - max(start, self.h))
            busy = sum(busy_s[bisect.bisect_left(starts, start) : bisect.bisect_left(starts, stop)])
            # held and busy are sums of the same spans: equal ones can differ by a rounding error
            # (-1e-15), and a counter that decreases reads as a reset in Prometheus.
            idle[log.roles[p]] = idle.get(log.roles[p], 0.0) + max(0.0, held - busy)
        return self.kv, role, switches, idle


class _PieceBuilder:
    """Collects pieces and scheduled times into the lists of a :class:`TokenPieces`."""

    def __init__(self) -> None:
        self.rid: list[int] = []
        self.first_it: list[int] = []
        self.count: list[int] = []
        self.kind: list[int] = []
        self.prev_s: list[float] = []
        self.times: list[float] = []
        self.sched_rid: list[int] = []
        self.sched_s: list[float] = []

    def add(self, rid: int, first_it: int, times: list[float], kind: PieceKind, prev: float | None) -> None:
        self.rid.append(rid)
        self.first_it.append(first_it)
        self.count.append(len(times))
        self.kind.append(int(kind))
        self.prev_s.append(math.nan if prev is None else prev)
        self.times.extend(times)

    def scheduled(self, rid: int, start_s: float) -> None:
        self.sched_rid.append(rid)
        self.sched_s.append(start_s)

    def build(self, engine: str, from_it: int, to_it: int, final: bool) -> TokenPieces:
        return TokenPieces(
            engine, from_it, to_it, self.rid, self.first_it, self.count, self.kind, self.prev_s, self.times,
            self.sched_rid, self.sched_s, final,
        )  # fmt: skip
