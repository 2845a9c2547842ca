"""Merge the components' exports into one :class:`~llmtwin.cluster.records.RunResult`, streaming.

In one process, :func:`llmtwin.cluster.run.run_scenario` feeds the :class:`Assembler` the
instances' logs in chunks while the run goes (see ``engine_log.py``); over NATS it gets one export
per instance at the end. Either way every figure is the same: per-request values are computed
from the request's complete token times once its last token is in, and per-instance sums are
exactly rounded (``exact_sum.py``), so neither depends on how the logs were cut.

A request's token times exist only while it is in flight: when its last token arrives they are
reduced (in batches, vectorised: ``tbt_stats.py``) to one row of the request table, and its gaps
are added to the run's pooled TBT distribution (``quantiles.py``). Memory therefore grows with
the requests in flight, not with those finished, except for ``detail=True``, which keeps every
token time for :attr:`RunResult.requests`.

Deterministic: a request's token times are its pieces (one per instance and stretch of decoding)
in order of time (then instance); its instances are listed in order of first use (then id);
its moved KV bytes are summed by instance id, then in the order each instance logged them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from llmtwin.cluster.exact_sum import ExactSum
from llmtwin.cluster.instance_stats import InstanceStats
from llmtwin.cluster.messages import BalancerExport, GeneratorExport, InstanceExport
from llmtwin.cluster.quantiles import StreamQuantiles
from llmtwin.cluster.records import InstanceRecord, RequestRecord, RequestTable, RunResult
from llmtwin.cluster.tbt_stats import gap_stats
from llmtwin.errors import ConfigurationError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

UNFINISHED = "unfinished: still in the cluster when the run ended"

READY_BATCH = 4096
"""Finished requests reduced together (one vectorised pass over their tokens)."""


@dataclass(slots=True)
class _InFlight:
    """What is known of a request whose last token has not arrived yet."""

    tokens: int = 0
    pieces: list[tuple[float, int, FloatArray]] = field(default_factory=list)
    """(time of the first token, instance, token times) per stretch of tokens."""
    first_use: dict[int, float] = field(default_factory=dict)
    """Instance -> start of the first iteration that computed for the request there."""
    moved: list[tuple[int, float]] = field(default_factory=list)
    """(instance, bytes) in the order logged."""

    def use(self, iid: int, t: float) -> None:
        if iid not in self.first_use or t < self.first_use[iid]:
            self.first_use[iid] = t

    def token_times(self) -> FloatArray:
        pieces = sorted(self.pieces, key=lambda p: (p[0], p[1]))
        return np.concatenate([p[2] for p in pieces]) if pieces else np.empty(0)

    def instances(self) -> list[int]:
        return [i for i, _ in sorted(self.first_use.items(), key=lambda kv: (kv[1], kv[0]))]

    def moved_bytes(self) -> float:
        total = 0.0
        for _, nbytes in sorted(self.moved, key=lambda m: m[0]):  # stable: log order per instance
            total += nbytes
        return total


Row = tuple[int, FloatArray, list[int], float]
"""(request id, token times, instances in order of first use, KV bytes moved)."""


class RequestRows:
    """The request table and the run's pooled token gaps, filled a batch of requests at a time."""

    def __init__(self, table: RequestTable, detail: bool) -> None:
        self.table = table
        self.gaps = StreamQuantiles.for_count(int(np.maximum(table.output_tokens - 1, 0).sum()))
        self.gap_sum = ExactSum()
        self.token_times: list[list[float]] | None = [[] for _ in range(len(table))] if detail else None
        self.settled_s = -np.inf
        """Latest completion written so far."""

    def write(self, rows: list[Row], completed: bool) -> None:
        """Rows of requests: completed ones (they produced every token) or not."""
        t = self.table
        rids = np.asarray([r[0] for r in rows], dtype=np.int64)
        times = [r[1] for r in rows]
        counts = np.asarray([a.size for a in times], dtype=np.int64)
        flat = np.concatenate(times) if times else np.empty(0)
        stats = gap_stats(flat, counts)
        has = counts > 0
        ends = np.cumsum(counts)
        t.generated_tokens[rids] = counts
        t.first_token_s[rids[has]] = flat[(ends - counts)[has]]
        if completed and rows:
            t.completion_s[rids] = flat[ends - 1]
            self.settled_s = max(self.settled_s, float(flat[ends - 1].max()))
        t.tbt_mean_s[rids] = stats.mean
        t.tbt_p90_s[rids] = stats.p90
        t.tbt_p99_s[rids] = stats.p99
        t.tbt_max_s[rids] = stats.max
        for rid, tt, instances, moved in rows:
            t.set_instances(rid, instances)
            t.kv_bytes_moved[rid] = moved
            if self.token_times is not None:
                self.token_times[rid] = tt.tolist()
        self.gaps.add(stats.pooled)
        self.gap_sum.add(stats.total)


class Assembler:
    """Builds a run's records from its generator's export and its instances' log chunks."""

    def __init__(self, table: RequestTable, *, detail: bool = False) -> None:
        """``table``: the run's requests (``RequestTable.empty``: arrival and lengths only)."""
        n = len(table)
        self.rows = RequestRows(table, detail)
        self.table = table
        self.output = table.output_tokens.tolist()
        self.start_s = float(table.arrival_s.min()) if n else 0.0
        self.detail = detail
        self.in_flight: dict[int, _InFlight] = {}
        self.complete: list[tuple[float, int]] = []
        """(completion time, request) of the requests whose last token arrived, not yet final."""
        self.ready: list[tuple[int, _InFlight]] = []
        self.done = np.zeros(n, dtype=bool)
        """Rows written (a request finishes once)."""
        self.instances: dict[int, InstanceStats] = {}

    # -- input --------------------------------------------------------------------------------------
    def add(self, x: InstanceExport, first_open_it: int | None = None) -> None:
        """The next chunk of one instance's log. ``first_open_it``: the first iteration any of its
        tokens still to be logged can come from (iteration times before it are dropped)."""
        stats = self.instances.get(x.iid)
        if stats is None:
            stats = self.instances[x.iid] = InstanceStats(x, self.start_s, self.detail)
        stats.add(x, float(self.rows.settled_s))
        for rid in x.preempted_rids:
            self._known(rid)
            self.table.preemptions[rid] += 1
        for rid, nbytes in zip(x.moved_rids, x.moved_bytes, strict=True):
            self._flight(rid).moved.append((x.iid, nbytes))
        self._add_tokens(stats, x)
        if first_open_it is not None:
            stats.prune(first_open_it)

    def settle(self, now: float = np.inf) -> None:
        """Every instance's log is in, and every event before ``now`` was handled: the requests
        that completed before ``now`` are final (an instance logs the last KV it moves for a
        request when it handles the request's completion, which may come after the engine logged
        the last token)."""
        keep = []
        for t_done, rid in self.complete:
            if t_done < now:
                self.ready.append((rid, self.in_flight.pop(rid)))
                self.done[rid] = True
            else:
                keep.append((t_done, rid))
        self.complete = keep
        if len(self.ready) >= READY_BATCH:
            self.flush()

    def _known(self, rid: int) -> None:
        if self.done[rid]:
            raise AssertionError(f"request {rid}: logged after its last token (drained too early)")

    def _flight(self, rid: int) -> _InFlight:
        self._known(rid)
        f = self.in_flight.get(rid)
        if f is None:
            f = self.in_flight[rid] = _InFlight()
        return f

    def _add_tokens(self, stats: InstanceStats, x: InstanceExport) -> None:
        iid = x.iid
        if x.chunk_rid:
            starts, _ = stats.times(np.asarray(x.chunk_it, dtype=np.int64))
            for rid, t in zip(x.chunk_rid, starts.tolist(), strict=True):
                self._flight(rid).use(iid, t)
        if not x.range_rid:
            return
        first = np.asarray(x.range_first, dtype=np.int64)
        count = np.asarray(x.range_last, dtype=np.int64) - first + 1
        offsets = np.cumsum(count) - count
        its = np.repeat(first, count) + (np.arange(int(count.sum())) - np.repeat(offsets, count))
        starts, ends = stats.times(its)
        stats.tokens += int(count.sum())
        first_start = starts[offsets].tolist()
        for j, rid in enumerate(x.range_rid):
            f = self._flight(rid)
            lo = int(offsets[j])
            piece = ends[lo : lo + int(count[j])]
            f.pieces.append((float(piece[0]), iid, piece))
            f.tokens += piece.size
            f.use(iid, first_start[j])
            if f.tokens == self.output[rid]:
                self.complete.append((max(float(p[2][-1]) for p in f.pieces), rid))

    # -- rows ---------------------------------------------------------------------------------------
    def flush(self) -> None:
        """Write the rows of the requests whose last token arrived."""
        if self.ready:
            self._write_rows(self.ready, completed=True)
            self.ready = []

    def _write_rows(self, rows: list[tuple[int, _InFlight]], completed: bool) -> None:
        self.rows.write(
            [(rid, f.token_times(), f.instances(), f.moved_bytes()) for rid, f in rows], completed
        )

    # -- the end ------------------------------------------------------------------------------------
    def finish(self, bal: BalancerExport, end_s: float) -> tuple[RequestTable, list[InstanceRecord]]:
        """Every remaining request (failed, or still unfinished when the run ended) and the
        instances' records."""
        self.settle()
        self.flush()
        failed = dict(zip(bal.failed_rids, bal.failed_reasons, strict=True))
        t = self.table
        for rid in failed:
            if self.done[rid]:
                raise AssertionError(f"request {rid} both failed and finished")
        rest = [(rid, self.in_flight.pop(rid, _InFlight())) for rid in np.flatnonzero(~self.done).tolist()]
        if rest:
            self._write_rows(rest, completed=False)
            for rid, _ in rest:
                t.failure[rid] = t.reason_code(failed.get(rid, UNFINISHED))
        done = t.completion_s[~np.isnan(t.completion_s)]
        span_end = float(done.max()) if done.size else max(end_s, self.start_s)
        records = [s.finish(end_s, span_end) for _, s in sorted(self.instances.items())]
        return t, records


def split_parts(parts: Mapping[str, object]) -> tuple[GeneratorExport, BalancerExport, list[InstanceExport]]:
    """The typed exports out of ``{component id: export}``."""
    gen = parts.get("generator")
    bal = parts.get("balancer")
    if not isinstance(gen, GeneratorExport) or not isinstance(bal, BalancerExport):
        raise ConfigurationError("a run's parts need the generator's and the balancer's exports")
    insts = [p for c, p in parts.items() if c.startswith("instance-") and isinstance(p, InstanceExport)]
    return gen, bal, insts


def finish_result(
    asm: Assembler,
    policy: str,
    scenario: str,
    seed: int,
    bal: BalancerExport,
    end_s: float,
    stats: dict[str, float],
) -> RunResult:
    table, instances = asm.finish(bal, end_s)
    rows = asm.rows
    return RunResult(
        policy=policy, scenario=scenario, seed=seed, table=table, instances=instances, end_s=end_s,
        tbt_gaps=rows.gaps, tbt_sum_s=rows.gap_sum.value, stats=dict(stats), token_times=rows.token_times,
    )  # fmt: skip


def make_result(
    policy: str,
    scenario: str,
    seed: int,
    parts: Mapping[str, object],
    end_s: float,
    stats: dict[str, float],
    *,
    detail: bool = True,
) -> RunResult:
    """A run's result from one export per component (the NATS path)."""
    gen, bal, insts = split_parts(parts)
    if gen.rids != list(range(len(gen.rids))):
        raise ConfigurationError("request ids must be 0..n-1")
    table = RequestTable.empty(
        np.asarray(gen.arrival_s, dtype=np.float64),
        np.asarray(gen.prompt_tokens, dtype=np.int64),
        np.asarray(gen.output_tokens, dtype=np.int64),
    )
    asm = Assembler(table, detail=detail)
    for x in sorted(insts, key=lambda e: e.iid):
        asm.add(x)
    return finish_result(asm, policy, scenario, seed, bal, end_s, stats)


def result_from_records(
    policy: str,
    scenario: str,
    seed: int,
    requests: list[RequestRecord],
    instances: list[InstanceRecord],
    end_s: float,
    **meta: Any,
) -> RunResult:
    """A result from complete per-request records (built by hand, or read back): the same table
    and pooled statistics the assembler computes from a run's logs. ``meta``: the other
    :class:`RunResult` fields (hardware, model, tp, usd_per_device_hour, stats)."""
    requests = sorted(requests, key=lambda r: r.rid)
    if [r.rid for r in requests] != list(range(len(requests))):
        raise ConfigurationError("request ids must be 0..n-1")
    table = RequestTable.empty(
        np.asarray([r.arrival_s for r in requests], dtype=np.float64),
        np.asarray([r.prompt_tokens for r in requests], dtype=np.int64),
        np.asarray([r.output_tokens for r in requests], dtype=np.int64),
    )
    rows = RequestRows(table, detail=True)
    for done in (True, False):
        rows.write(
            [
                (r.rid, np.asarray(r.token_times_s, dtype=np.float64), list(r.instances), r.kv_bytes_moved)
                for r in requests
                if (r.completion_s is not None and r.failed_reason is None) == done
            ],
            completed=done,
        )
    for r in requests:
        table.preemptions[r.rid] = r.preemptions
        if r.completion_s is None or r.failed_reason is not None:
            table.failure[r.rid] = table.reason_code(r.failed_reason or "unfinished")
    return RunResult(
        policy=policy, scenario=scenario, seed=seed, table=table, instances=list(instances), end_s=end_s,
        tbt_gaps=rows.gaps, tbt_sum_s=rows.gap_sum.value, token_times=rows.token_times, **meta,
    )  # fmt: skip
