"""A capacity study's answers as a table (text or Markdown) and as a JSON-able document."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from llmtwin.capacity.search import Bound
from llmtwin.capacity.study import RowResult, Study
from llmtwin.cluster.run import step_model
from llmtwin.report.tables import format_table
from llmtwin.scenario.spec import Scenario


def _bound(b: Bound, rate: bool) -> str:
    """A rate that holds (``>= r``: it still held at the search's limit; ``< r``: none held), or
    an instance count (``<= n``: the smallest tried held; ``> n``: even the largest failed)."""

    def fmt(x: float) -> str:
        return f"{x:.3g}" if rate else f"{int(x)}"

    if b.holds is None:
        return f"< {fmt(b.fails or 0.0)}" if rate else f"> {fmt(b.fails or 0.0)}"
    if b.fails is None:
        return f">= {fmt(b.holds)}" if rate else f"<= {fmt(b.holds)}"
    return fmt(b.holds)


def _setting(r: RowResult) -> str:
    knob = r.row.knob
    if knob is None:
        return "-"
    values = sorted({s for s in r.settings if s is not None})
    return f"{knob.param} = {', '.join(str(v) for v in values) or '-'}"


def _spread(values: Sequence[float], fmt: str) -> tuple[str, str]:
    mean = _finite_mean(values)
    if mean is None:
        return "none", "-"
    ok = _finite(values)
    return fmt.format(mean), f"{fmt.format(min(ok))}-{fmt.format(max(ok))}" if len(ok) > 1 else "-"


def capacity_table(study: Study, results: Sequence[RowResult], markdown: bool = False) -> str:
    """Rate question: capacity (req/s) per row, mean and range over seeds, each seed's bound,
    AcceLLM's capacity relative to the row, and (tuned rows) the settings tried."""
    ref = next((r for r in results if r.row.policy == "accellm"), None)
    header = ["policy", "setting", "capacity (req/s)", "seed range", "per seed", "accellm vs it", "tried"]
    rows = []
    for r in results:
        mean, spread = _spread(r.values(), "{:.3g}")
        versus = "-"
        if ref is not None and ref is not r:
            mine, theirs = _finite_mean(r.values()), _finite_mean(ref.values())
            if mine and theirs:
                versus = f"{(theirs - mine) / mine * 100:+.0f}%"
        tried = ", ".join(f"{k}: {v:.3g}" for k, v in r.scores.items()) or "-"
        per_seed = ", ".join(_bound(b, True) for b in r.bounds)
        rows.append([r.row.label, _setting(r), mean, spread, per_seed, versus, tried])
    return format_table(header, rows, left=2, markdown=markdown)


def size_table(
    study: Study, results: Sequence[RowResult], devices_per_instance: int, usd_per_device_hour: float | None,
    markdown: bool = False,
) -> str:  # fmt: skip
    """Size question: the fewest instances holding the rate, per row (largest over the seeds,
    the one that holds for every seed), each seed's answer, devices and price per hour."""
    header = ["policy", "setting", "instances (all seeds)", "per seed", "devices", "USD/h"]
    rows = []
    for r in results:
        vals = r.values()
        worst = None if any(math.isnan(v) for v in vals) else int(max(vals))
        devices = "-" if worst is None else str(worst * devices_per_instance)
        usd = "-"
        if worst is not None and usd_per_device_hour is not None:
            usd = f"{worst * devices_per_instance * usd_per_device_hour:.1f}"
        per_seed = ", ".join(_bound(b, False) for b in r.bounds)
        rows.append(
            [r.row.label, _setting(r), "none" if worst is None else str(worst), per_seed, devices, usd]
        )
    return format_table(header, rows, left=2, markdown=markdown)


def study_document(study: Study, results: Sequence[RowResult], runs: int, wall_s: float) -> dict[str, Any]:
    """Everything needed to rebuild the table, for ``capacity.json``."""
    return {
        "scenario": study.scenario,
        "question": "rate" if study.rate is None else "size",
        "rate_rps": study.rate,
        "instances": study.instances,
        "overrides": list(study.overrides),
        "slo_attainment_target": study.target,
        "seeds": list(study.seeds),
        "tolerance": study.tolerance,
        "runs": runs,
        "wall_s": wall_s,
        "rows": [
            {
                "label": r.row.label,
                "policy": r.row.policy,
                "tuned": r.row.tuned,
                "param": None if r.row.knob is None else r.row.knob.param,
                "fixed": None if r.row.knob is None else r.row.knob.fixed,
                "settings": r.settings,
                "holds": [b.holds for b in r.bounds],
                "fails": [b.fails for b in r.bounds],
                "scores": {str(k): v for k, v in r.scores.items()},
            }
            for r in results
        ],
    }


def _finite(values: Sequence[float]) -> list[float]:
    """The seeds' values that are numbers (NaN: no value held the target, `RowResult.values`)."""
    return [v for v in values if not math.isnan(v)]


def _finite_mean(values: Sequence[float]) -> float | None:
    ok = _finite(values)
    return sum(ok) / len(ok) if ok else None


def study_table(base: Scenario, study: Study, results: list[RowResult], markdown: bool) -> str:
    """The table for the study's question."""
    if study.rate is None:
        return capacity_table(study, results, markdown=markdown)
    hw = step_model(base).hw
    return size_table(study, results, base.cluster.tp, hw.usd_per_hour, markdown=markdown)


def study_heading(base: Scenario, study: Study, runs: int, wall_s: float) -> str:
    """What was asked, of which cluster, with which SLOs, seeds and effort."""
    hw = step_model(base).hw
    c, slo = base.cluster, base.slo
    devices = c.instances * c.tp
    price = f", {devices * hw.usd_per_hour:.1f} USD/h" if hw.usd_per_hour is not None else ""
    what = (
        f"highest rate with >= {study.target * 100:g}% of requests in SLO on {c.instances} x {hw.name} "
        f"TP{c.tp} ({devices} devices{price}), to within {study.tolerance * 100:g}%"
        if study.rate is None
        else f"fewest {hw.name} TP{c.tp} instances with >= {study.target * 100:g}% of requests in SLO at "
        f"{study.rate:g} req/s"
    )
    seeds = ", ".join(str(s) for s in study.seeds)
    return (
        f"capacity of {base.name}: {what}\n"
        f"SLO: TTFT <= {slo.ttft_s:g} s, per-request {slo.tbt_stat} TBT <= {slo.tbt_s:g} s; "
        f"{base.workload.requests or 'all'} requests per run; seeds {seeds}; {runs} runs in {wall_s:.0f} s"
    )
