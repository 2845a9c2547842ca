"""Merge the components' exports into one :class:`~llmtwin.cluster.records.RunResult`.

Deterministic: instances are visited in index order and every per-request list is ordered by
time (then instance), so the result depends only on the exports, not on where they came from.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from llmtwin.cluster.messages import BalancerExport, GeneratorExport, InstanceExport
from llmtwin.cluster.records import FaultRecord, InstanceRecord, RequestRecord, RunResult
from llmtwin.errors import ConfigurationError

UNFINISHED = "unfinished: still in the cluster when the run ended"


def iteration_times(x: InstanceExport) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) time of every iteration of one instance, by iteration index."""
    k = np.asarray(x.seg_k, dtype=np.int64)
    n = int(k.sum())
    if n == 0:
        empty = np.empty(0, dtype=np.float64)
        return empty, empty
    it = np.arange(n, dtype=np.int64)
    anchor_it = np.repeat(np.asarray(x.seg_anchor_it, dtype=np.int64), k)
    anchor_t = np.repeat(np.asarray(x.seg_anchor_t, dtype=np.float64), k)
    dt = np.repeat(np.asarray(x.seg_dt, dtype=np.float64), k)
    # The same expression as the engine's (anchor + m * dt), so the floats are identical.
    end = anchor_t + (it - anchor_it + 1).astype(np.float64) * dt
    start = anchor_t + (it - anchor_it).astype(np.float64) * dt
    return start, end


def instance_record(
    x: InstanceExport, start: np.ndarray, end: np.ndarray, end_s: float, tokens: int
) -> InstanceRecord:
    k = np.asarray(x.seg_k, dtype=np.int64)
    # Summed per iteration, so the figure does not depend on how iterations were segmented.
    roles = np.repeat(np.asarray(x.seg_role), k)
    took = end - start
    busy = {str(role): float(took[roles == role].sum()) for role in sorted(set(x.seg_role))}
    idle_by_role = _idle_by_role(x, start, took, end_s)
    batch = np.repeat(
        np.asarray(x.seg_decode, dtype=np.int64) + np.asarray(x.seg_prefill_seqs, dtype=np.int64), k
    )
    per_block = x.block_bytes
    return InstanceRecord(
        iid=x.iid,
        devices=x.devices,
        busy_s=busy,
        idle_s=max(0.0, end_s - sum(busy.values())),
        idle_s_by_role=idle_by_role,
        iterations=int(k.sum()),
        role_switches=max(0, len(x.role) - 1),
        batch_sizes=batch.tolist(),
        kv_timeline=[
            (t, p * per_block, r * per_block)
            for t, p, r in zip(x.kv_t, x.kv_primary_blocks, x.kv_redundant_blocks, strict=True)
        ],
        role_timeline=list(zip(x.role_t, x.role, strict=True)),
        kv_capacity_bytes=x.kv_capacity_blocks * per_block,
        tokens_generated=tokens,
        prefill_tokens=int(np.dot(np.asarray(x.seg_prefill_tokens, dtype=np.int64), k)),
        preemptions=len(x.preempted_rids),
    )


def _idle_by_role(x: InstanceExport, start: np.ndarray, took: np.ndarray, end_s: float) -> dict[str, float]:
    """Per role: the time spent in it (until ``end_s``) minus the iterations run in it."""
    role_t = np.asarray(x.role_t, dtype=np.float64)
    bounds = np.append(role_t, max(end_s, float(role_t[-1]) if len(role_t) else end_s))
    # Role changes happen at iteration boundaries, so every iteration lies in one period.
    period = np.searchsorted(role_t, start, side="right") - 1
    out: dict[str, float] = {}
    for k, role in enumerate(x.role):
        span = float(bounds[k + 1] - bounds[k])
        out[role] = out.get(role, 0.0) + span - float(took[period == k].sum())
    return {r: max(0.0, v) for r, v in sorted(out.items())}


def assemble(
    gen: GeneratorExport,
    bal: BalancerExport,
    instances: list[InstanceExport],
    end_s: float,
) -> tuple[list[RequestRecord], list[InstanceRecord]]:
    """Per-request and per-instance records from the exports."""
    n = len(gen.rids)
    if gen.rids != list(range(n)):
        raise ConfigurationError("request ids must be 0..n-1")
    pieces: list[list[tuple[float, int, list[float]]]] = [[] for _ in range(n)]
    first_use: list[dict[int, float]] = [{} for _ in range(n)]
    preemptions = [0] * n
    moved = [0.0] * n
    inst_records = []
    for x in sorted(instances, key=lambda e: e.iid):
        start, end = iteration_times(x)
        ends = end.tolist()
        starts = start.tolist()
        tokens = 0
        for rid, a, b in zip(x.range_rid, x.range_first, x.range_last, strict=True):
            pieces[rid].append((ends[a], x.iid, ends[a : b + 1]))
            tokens += b - a + 1
            _first(first_use[rid], x.iid, starts[a])
        for rid, a in zip(x.chunk_rid, x.chunk_it, strict=True):
            _first(first_use[rid], x.iid, starts[a])
        for rid in x.preempted_rids:
            preemptions[rid] += 1
        for rid, nbytes in zip(x.moved_rids, x.moved_bytes, strict=True):
            moved[rid] += nbytes
        inst_records.append(instance_record(x, start, end, end_s, tokens))
    failed = dict(zip(bal.failed_rids, bal.failed_reasons, strict=True))
    records = []
    for rid in range(n):
        times: list[float] = []
        for _, _, ts in sorted(pieces[rid], key=lambda p: (p[0], p[1])):
            times.extend(ts)
        out = gen.output_tokens[rid]
        reason = failed.get(rid)
        done = reason is None and len(times) == out
        if reason is None and not done:
            reason = UNFINISHED
        uses = sorted(first_use[rid].items(), key=lambda kv: (kv[1], kv[0]))
        records.append(
            RequestRecord(
                rid=rid,
                arrival_s=gen.arrival_s[rid],
                prompt_tokens=gen.prompt_tokens[rid],
                output_tokens=out,
                generated_tokens=len(times),
                first_token_s=times[0] if times else None,
                completion_s=times[-1] if done else None,
                token_times_s=times,
                instances=[i for i, _ in uses],
                preemptions=preemptions[rid],
                kv_bytes_moved=moved[rid],
                failed_reason=reason,
            )
        )
    return records, inst_records


def _first(uses: dict[int, float], iid: int, t: float) -> None:
    if iid not in uses or t < uses[iid]:
        uses[iid] = t


def split_parts(parts: Mapping[str, object]) -> tuple[GeneratorExport, BalancerExport, list[InstanceExport]]:
    """The typed exports out of ``{component id: export}``."""
    gen = parts.get("generator")
    bal = parts.get("balancer")
    if not isinstance(gen, GeneratorExport) or not isinstance(bal, BalancerExport):
        raise ConfigurationError("a run's parts need the generator's and the balancer's exports")
    insts = [p for c, p in parts.items() if c.startswith("instance-") and isinstance(p, InstanceExport)]
    return gen, bal, insts


def make_result(
    policy: str, scenario: str, seed: int, parts: Mapping[str, object], end_s: float, stats: dict[str, float]
) -> RunResult:
    gen, bal, insts = split_parts(parts)
    requests, instances = assemble(gen, bal, insts, end_s)
    faults = FaultRecord(
        affected=list(bal.fault_rids),
        recomputed_kv_tokens=dict(zip(bal.recomputed_rids, bal.recomputed_kv_tokens, strict=True)),
        redirected=list(bal.redirected_rids),
    )
    return RunResult(policy=policy, scenario=scenario, seed=seed, requests=requests, instances=instances,
                     end_s=end_s, stats=dict(stats), faults=faults)  # fmt: skip
