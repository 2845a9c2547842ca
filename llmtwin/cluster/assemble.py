"""Merge the components' exports into one :class:`~llmtwin.cluster.records.RunResult`, streaming.

In one process, :func:`llmtwin.cluster.run.run_scenario` feeds the :class:`Assembler` the
instances' logs in chunks while the run goes (see ``engine_log.py``); over NATS it gets one export
per instance at the end. Either way every figure is the same: per-request values are computed
from the request's complete token times once its last token is in, and per-instance sums are
exactly rounded (``exact_sum.py``), so neither depends on how the logs were cut.

A request's token times exist only while it is in flight (``in_flight.py``): once it is final they
are reduced, a batch of requests at a time and vectorised (``tbt_stats.py``), to one row of the
request table, and its gaps are added to the run's pooled TBT distribution (``quantiles.py``).
Memory therefore grows with the requests in flight, not with those finished, except for
``detail=True``, which keeps every token time for :attr:`RunResult.requests`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from llmtwin.cluster.exact_sum import ExactSum
from llmtwin.cluster.in_flight import Finished, InFlight, positions
from llmtwin.cluster.instance_stats import InstanceStats
from llmtwin.cluster.messages import BalancerExport, GeneratorExport, InstanceExport
from llmtwin.cluster.quantiles import StreamQuantiles
from llmtwin.cluster.records import FaultRecord, InstanceRecord, RequestRecord, RequestTable, RunResult
from llmtwin.cluster.tbt_stats import gap_stats
from llmtwin.errors import ConfigurationError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

UNFINISHED = "unfinished: still in the cluster when the run ended"


class RequestRows:
    """The request table and the run's pooled token gaps, filled a batch of requests at a time."""

    def __init__(self, table: RequestTable, detail: bool) -> None:
        self.table = table
        self.gaps = StreamQuantiles.for_count(int(np.maximum(table.output_tokens - 1, 0).sum()))
        self.gap_sum = ExactSum()
        self.token_times: list[list[float]] | None = [[] for _ in range(len(table))] if detail else None
        self.settled_s = -np.inf
        """Latest completion written so far."""

    def write(self, f: Finished, completed: bool) -> None:
        """Rows of requests: completed ones (they produced every token) or not."""
        t, rids, counts, flat = self.table, f.rids, f.counts, f.times
        stats = gap_stats(flat, counts)
        has = counts > 0
        ends = np.cumsum(counts)
        t.generated_tokens[rids] = counts
        t.first_token_s[rids[has]] = flat[(ends - counts)[has]]
        if completed and rids.size:
            t.completion_s[rids] = flat[ends - 1]
            self.settled_s = max(self.settled_s, float(flat[ends - 1].max()))
        t.tbt_mean_s[rids] = stats.mean
        t.tbt_p90_s[rids] = stats.p90
        t.tbt_p99_s[rids] = stats.p99
        t.tbt_max_s[rids] = stats.max
        t.set_instances(rids, f.instances)
        t.kv_bytes_moved[rids] = f.moved
        if self.token_times is not None:
            for rid, lo, hi in zip(rids.tolist(), (ends - counts).tolist(), ends.tolist(), strict=True):
                self.token_times[rid] = flat[lo:hi].tolist()
        self.gaps.add(stats.pooled)
        self.gap_sum.add(stats.total)


class Assembler:
    """Builds a run's records from its requests and its instances' log chunks."""

    def __init__(self, table: RequestTable, detail: bool = False) -> None:
        """``table``: the run's requests (``RequestTable.empty``: arrival and lengths only)."""
        n = len(table)
        self.rows = RequestRows(table, detail)
        self.table = table
        self.start_s = float(table.arrival_s.min()) if n else 0.0
        self.detail = detail
        self.flight = InFlight(n)
        self.complete: list[IntArray] = []
        """Requests whose last token arrived, not yet final (see :meth:`settle`)."""
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
        if x.preempted_rids:
            np.add.at(self.table.preemptions, self._known(x.preempted_rids), 1)
        if x.moved_rids:
            self.flight.add_moves(
                self._known(x.moved_rids), x.iid, np.asarray(x.moved_bytes, dtype=np.float64)
            )
        if x.chunk_rid:
            starts = stats.starts(np.asarray(x.chunk_it, dtype=np.int64))
            self.flight.add_uses(self._known(x.chunk_rid), x.iid, starts)
        if x.range_rid:
            self._add_ranges(stats, x)
        if first_open_it is not None:
            stats.prune(first_open_it)

    def _known(self, rids: list[int]) -> IntArray:
        a = np.asarray(rids, dtype=np.int64)
        if self.done[a].any():
            raise AssertionError(f"request {int(a[self.done[a]][0])}: logged after it was final")
        return a

    def _add_ranges(self, stats: InstanceStats, x: InstanceExport) -> None:
        rids = self._known(x.range_rid)
        first = np.asarray(x.range_first, dtype=np.int64)
        count = np.asarray(x.range_last, dtype=np.int64) - first + 1
        ends = stats.ends(positions(first, count))
        stats.tokens += int(count.sum())
        self.flight.add_uses(rids, x.iid, stats.starts(first))
        self.flight.add_pieces(rids, x.iid, count, ends)
        self.complete.append(rids[self.flight.tokens[rids] == self.table.output_tokens[rids]])

    def settle(self, now: float = np.inf) -> None:
        """Every instance's log is in, and every event before ``now`` was handled: the requests
        that completed before ``now`` are final (an instance logs the last KV it moves for a
        request when it handles the request's completion, which may come after the engine logged
        the last token). Their rows are written."""
        complete = np.unique(np.concatenate(self.complete)) if self.complete else np.empty(0, np.int64)
        is_final = self.flight.last_s[complete] < now
        final = complete[is_final]
        self.complete = [complete[~is_final]]
        if final.size:
            self.done[final] = True
            self.rows.write(self.flight.take(final), completed=True)

    # -- the end ------------------------------------------------------------------------------------
    def finish(self, bal: BalancerExport, end_s: float) -> tuple[RequestTable, list[InstanceRecord]]:
        """Every remaining request (failed, or still unfinished when the run ended) and the
        instances' records."""
        self.settle()
        t = self.table
        failed = dict(zip(bal.failed_rids, bal.failed_reasons, strict=True))
        if self.done[list(failed)].any():
            raise AssertionError("a request both failed and finished")
        rest = np.flatnonzero(~self.done)
        if rest.size:
            self.done[rest] = True
            self.rows.write(self.flight.take(rest), completed=False)
            for rid in rest.tolist():
                t.failure[rid] = t.reason_code(failed.get(rid, UNFINISHED))
        done = t.completion_s[~np.isnan(t.completion_s)]
        span_end = float(done.max()) if done.size else max(end_s, self.start_s)
        records = [s.finish(end_s, span_end) for _, s in sorted(self.instances.items())]
        return t, records

    def result(self, end: RunEnd) -> RunResult:
        """The run's result, once every chunk is in (see :meth:`finish`)."""
        table, instances = self.finish(end.balancer, end.end_s)
        rows = self.rows
        bal = end.balancer
        faults = FaultRecord(
            affected=list(bal.fault_rids),
            recomputed_kv_tokens=dict(zip(bal.recomputed_rids, bal.recomputed_kv_tokens, strict=True)),
            redirected=list(bal.redirected_rids),
        )
        return RunResult(
            policy=end.policy, scenario=end.scenario, seed=end.seed, table=table, instances=instances,
            end_s=end.end_s, tbt_gaps=rows.gaps, tbt_sum_s=rows.gap_sum.value, stats=dict(end.stats),
            token_times=rows.token_times, faults=faults,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class RunEnd:
    """How a run ended: what its result needs besides the instances' logs."""

    policy: str
    scenario: str
    seed: int
    balancer: BalancerExport
    end_s: float
    stats: dict[str, float]


class ResultSink(Protocol):
    """What a run hands its logs to: an :class:`Assembler`, or a proxy of one in another process."""

    def add(self, x: InstanceExport, first_open_it: int | None = None) -> None: ...

    def settle(self, now: float = ...) -> None: ...

    def result(self, end: RunEnd) -> RunResult: ...


def split_parts(parts: Mapping[str, object]) -> tuple[GeneratorExport, BalancerExport, list[InstanceExport]]:
    """The typed exports out of ``{component id: export}``."""
    gen = parts.get("generator")
    bal = parts.get("balancer")
    if not isinstance(gen, GeneratorExport) or not isinstance(bal, BalancerExport):
        raise ConfigurationError("a run's parts need the generator's and the balancer's exports")
    insts = [p for c, p in parts.items() if c.startswith("instance-") and isinstance(p, InstanceExport)]
    return gen, bal, insts


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
    return asm.result(RunEnd(policy, scenario, seed, bal, end_s, stats))


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
        group = [r for r in requests if (r.completion_s is not None and r.failed_reason is None) == done]
        width = max((len(r.instances) for r in group), default=1) or 1
        used = np.full((len(group), width), -1, dtype=np.int32)
        for k, r in enumerate(group):
            used[k, : len(r.instances)] = r.instances
        rows.write(
            Finished(
                np.asarray([r.rid for r in group], dtype=np.int64),
                np.asarray([len(r.token_times_s) for r in group], dtype=np.int64),
                np.asarray([t for r in group for t in r.token_times_s], dtype=np.float64),
                used,
                np.asarray([r.kv_bytes_moved for r in group], dtype=np.float64),
            ),
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
