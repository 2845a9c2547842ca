"""The output folders of ``simulate``, ``compare`` and ``sweep``.

simulate: summary.json, requests.csv, instances.csv, scenario.json (and scenario.toml, which
reruns it) and the per-run plots.
compare: one such folder per policy, overlaid latency CDFs and compare.json.
sweep: sweep.json and latency/throughput-versus-load plots.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmtwin.cluster.records import RunResult
from llmtwin.report.plot_data import latency_cdfs, run_plots
from llmtwin.report.summary import Summary
from llmtwin.report.tables import METRICS, slo_capacity
from llmtwin.report.writers import instances_csv, json_text, write_requests_csv, write_text, write_with
from llmtwin.scenario.spec import DEFAULT_SLO_TARGET

"""Fraction of requests within both SLOs that a sweep's SLO capacity asks for."""


@dataclass(frozen=True, slots=True)
class RunOutput:
    """One finished run and what describes it."""

    result: RunResult
    summary: Summary
    scenario: Mapping[str, Any]
    """The effective scenario (``dump_scenario``), after overrides and policy choice."""
    scenario_toml: str | None = None
    """The same as a TOML file that loads back (``scenario_toml``), when available."""


def summary_document(run: RunOutput) -> dict[str, Any]:
    """summary.json: the summary, then the effective scenario under ``effective_scenario``."""
    doc = run.summary.to_dict()
    doc["effective_scenario"] = dict(run.scenario)
    return doc


def write_run(
    out_dir: Path, run: RunOutput, *, plots: bool = True, plotter: Executor | None = None
) -> list[Path]:
    """Every file of one run into ``out_dir``; returns the paths written. With a ``plotter``
    (``plot_worker.plot_worker``), the plots are rendered there while the rest is written."""
    slo = run.summary.slo
    pending = _plot(plotter, "plot_run", run_plots(run.result), out_dir) if plots else None
    files = [
        write_text(out_dir / "summary.json", json_text(summary_document(run))),
        write_with(out_dir / "requests.csv", lambda f: write_requests_csv(f, run.result, slo)),
        write_text(out_dir / "instances.csv", instances_csv(run.result)),
        write_text(out_dir / "scenario.json", json_text(dict(run.scenario))),
    ]
    if run.scenario_toml is not None:
        files.append(write_text(out_dir / "scenario.toml", run.scenario_toml))
    if pending is not None:
        files += pending()
    return files


def _plot(plotter: Executor | None, name: str, *args: Any) -> Callable[[], Any]:
    """Call ``llmtwin.report.plots.<name>(*args)`` in ``plotter`` (or here, when there is none);
    returns a function that waits for, and returns, its result."""
    if plotter is None:
        from llmtwin.report import plots  # matplotlib: only when plotting

        result = getattr(plots, name)(*args)
        return lambda: result
    future = plotter.submit(_call_plots, name, *args)
    return future.result


def _call_plots(name: str, *args: Any) -> Any:
    from llmtwin.report import plots

    return getattr(plots, name)(*args)


def relative_changes(summaries: Sequence[Summary]) -> dict[str, dict[str, float | None]]:
    """Per policy after the first: each table metric's change vs the first, as a ratio
    (0.1 = +10%), except metrics in % (labels ending "(%)"): their difference in percentage points."""
    base = summaries[0]
    return {s.policy: {m.label: m.delta(s, base) for m in METRICS} for s in summaries[1:]}


def write_compare(
    out_dir: Path, runs: Sequence[RunOutput], *, plots: bool = True, plotter: Executor | None = None
) -> list[Path]:
    """Per-policy folders, compare.json and the overlaid CDFs."""
    files: list[Path] = []
    for run in runs:
        files += write_run(out_dir / run.summary.policy, run, plots=plots, plotter=plotter)
    summaries = [r.summary for r in runs]
    doc = {
        "scenario": summaries[0].scenario,
        "policies": [s.policy for s in summaries],
        "baseline": summaries[0].policy,
        "summaries": {s.policy: s.to_dict() for s in summaries},
        "change_vs_baseline": relative_changes(summaries),
    }
    files.append(write_text(out_dir / "compare.json", json_text(doc)))
    if plots:
        series = [(r.summary.policy, latency_cdfs(r.result)) for r in runs]
        files.append(
            _plot(plotter, "plot_latency_cdfs", series, out_dir / "latency_cdf.png", summaries[0].scenario)()
        )
    return files


def sweep_document(
    scenario: str, points: Sequence[tuple[float, Summary]], slo_target: float = DEFAULT_SLO_TARGET
) -> dict[str, Any]:
    """sweep.json: every (rate, policy) summary in run order, and each policy's SLO capacity."""
    return {
        "scenario": scenario,
        "rates_rps": sorted({r for r, _ in points}),
        "policies": list(dict.fromkeys(s.policy for _, s in points)),
        "slo_target": slo_target,
        "slo_capacity_rps": slo_capacity(points, slo_target),
        "points": [{"rate_rps": r, "policy": s.policy, "summary": s.to_dict()} for r, s in points],
    }


def write_sweep(
    out_dir: Path,
    scenario: str,
    points: Sequence[tuple[float, Summary]],
    *,
    slo_target: float = DEFAULT_SLO_TARGET,
    plots: bool = True,
) -> list[Path]:
    """sweep.json and the versus-load plots."""
    files = [write_text(out_dir / "sweep.json", json_text(sweep_document(scenario, points, slo_target)))]
    if plots:
        from llmtwin.report.sweep_plots import plot_sweep_latency, plot_sweep_throughput

        files.append(plot_sweep_latency(points, out_dir / "sweep_latency.png", scenario))
        files.append(plot_sweep_throughput(points, out_dir / "sweep_throughput.png", scenario))
    return files


def describe_written(out_dir: Path, files: Sequence[Path]) -> str:
    """One line naming what was written, grouped by folder: ``wrote OUT/: a, b; sub/: c, d``.

    Built from the writers' own lists of files, so it cannot drift from what they write.
    """
    groups: dict[str, list[str]] = {}
    for f in files:
        rel = f.relative_to(out_dir)
        folder = rel.parent.as_posix()
        groups.setdefault("" if folder == "." else f"{folder}/", []).append(rel.name)
    parts = [
        f"{folder}: {', '.join(names)}" if folder else ", ".join(names) for folder, names in groups.items()
    ]
    return f"wrote {out_dir}/: " + "; ".join(parts)
