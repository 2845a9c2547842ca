"""Plain-data views of a :class:`StepComparison` and a :class:`SweepResult` (for JSON and tables)."""

from __future__ import annotations

from statistics import geometric_mean
from typing import Any

from llmtwin.preserve.die_cost import COST_SOURCES, CostModel
from llmtwin.preserve.evaluate import StepComparison
from llmtwin.preserve.sweep import SweepResult
from llmtwin.preserve.timeline import OpSpan, Timeline


def layer_rows(cmp: StepComparison) -> list[dict[str, Any]]:
    """One row per layer (-1 = embedding, ``layers`` = final norm and LM head): its span in each
    timeline, the bytes its ops read from L2 and the bytes the windows of its allreduces fetched."""
    fetched: dict[int, float] = {}
    for w in cmp.plan.windows:
        fetched[w.layer] = fetched.get(w.layer, 0.0) + w.prefetched_bytes
    v, f, p = _by_layer(cmp.vanilla), _by_layer(cmp.fused), _by_layer(cmp.preserve)
    rows = []
    for layer in sorted(v):
        ps = p[layer]
        rows.append(
            {
                "layer": layer,
                "vanilla_s": _span(v[layer]),
                "fused_s": _span(f[layer]),
                "preserve_s": _span(ps),
                "preserve_start_s": ps[0].start_s - ps[0].wait_s,
                "preserve_end_s": ps[-1].end_s,
                "l2_hit_bytes": sum(s.l2_bytes for s in ps),
                "prefetched_bytes": fetched.get(layer, 0.0),
                "wait_s": sum(s.wait_s for s in ps),
            }
        )
    return rows


def layer_detail(cmp: StepComparison, layer: int) -> dict[str, Any]:
    """Op-level PRESERVE timeline of one layer and the windows its allreduces opened."""
    ops = [
        {
            "index": s.index,
            "name": s.name,
            "kind": s.kind,
            "start_s": s.start_s,
            "end_s": s.end_s,
            "wait_s": s.wait_s,
            "vanilla_s": cmp.vanilla.ops[s.index].duration_s,
            "l2_bytes": s.l2_bytes,
            "hbm_bytes": s.hbm_bytes,
        }
        for s in cmp.preserve.ops
        if s.layer == layer
    ]
    spans = {(p.allreduce, p.order): p for p in cmp.preserve.prefetches}
    windows = []
    for w in cmp.plan.windows:
        if w.layer != layer:
            continue
        d = w.to_dict()
        for item in d["items"]:
            span = spans[(w.allreduce, item["order"])]
            item["sim_start_s"], item["sim_end_s"], item["hit_bytes"] = (
                span.start_s,
                span.end_s,
                span.hit_bytes,
            )
        windows.append(d)
    return {"layer": layer, "ops": ops, "windows": windows}


def sweep_dict(result: SweepResult, cost: CostModel) -> dict[str, Any]:
    return {
        "rows": [
            {
                "l2_mb": r.l2_mb,
                "prefetch": r.prefetch,
                "perf": r.perf,
                "cost": r.cost,
                "perf_per_cost": r.perf_per_cost,
            }
            for r in result.rows
        ],
        "optimum": {
            "without_prefetch_mb": result.optimum.without_prefetch_mb,
            "with_prefetch_mb": result.optimum.with_prefetch_mb,
            "perf_per_cost_gain": result.optimum.perf_per_cost_gain,
        },
        "units": {
            "l2_mb": "MiB",
            "perf": "decode tokens/s of the TP group, geometric mean over the workloads",
            "cost": "USD for the TP group's devices",
            "perf_per_cost": "tokens/s per USD",
        },
        "workloads": [{"batch": w.batch, "context": w.context} for w in result.workloads],
        "excluded_workloads": [{"batch": w.batch, "context": w.context} for w in result.excluded],
        "speedups": [
            {"l2_mb": mib, "max": max(s), "geomean": geometric_mean(s)}
            for mib, s in sorted(result.speedups.items())
        ],
        "cost_model": cost.to_dict(),
        "cost_sources": dict(COST_SOURCES),
    }


def _by_layer(tl: Timeline) -> dict[int, list[OpSpan]]:
    out: dict[int, list[OpSpan]] = {}
    for s in tl.ops:
        out.setdefault(s.layer, []).append(s)
    return out


def _span(spans: list[OpSpan]) -> float:
    return spans[-1].end_s - (spans[0].start_s - spans[0].wait_s)
