"""``llmtwin capacity SCENARIO``: each policy's SLO capacity, or the smallest cluster for a rate.

See ``llmtwin/capacity/study.py`` for the questions and docs/results.md for what the tables say.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from llmtwin.capacity.driver import Progress, run_searches
from llmtwin.capacity.study import RowResult, Study, expected_runs, knob_of, row_search, rows_for
from llmtwin.capacity.table import capacity_table, size_table, study_document
from llmtwin.cli.commands.compare import name_list
from llmtwin.cluster.run import build_components, step_model
from llmtwin.errors import ConfigurationError
from llmtwin.report.outputs import DEFAULT_SLO_TARGET
from llmtwin.scenario.loader import load_scenario
from llmtwin.scenario.spec import Scenario

SLO_KEYS = ("ttft_s", "tbt_s", "tbt_stat", "attainment")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "capacity",
        help="highest rate each policy serves within the SLOs (or the smallest cluster for a rate)",
        description="Per policy and seed: the highest arrival rate at which the SLO attainment target "
        "holds (bisection over rate), or with --rate the fewest instances that hold that rate. Baselines "
        "with a configuration knob (disaggregated split, chunked-prefill budget) appear at the "
        "scenario's fixed setting and tuned by the same search.",
    )
    p.add_argument(
        "scenario", metavar="SCENARIO", help="scenario name (e.g. paper-h100-conv) or a .toml path"
    )
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a scenario field, e.g. workload.requests=2000 (repeatable)",
    )  # fmt: skip
    p.add_argument(
        "--policies", default="colocated,colocated-chunked,disaggregated,accellm",
        help="comma-separated policies (default: all four)",
    )  # fmt: skip
    p.add_argument(
        "--slo", default="",
        help="SLO overrides, e.g. ttft_s=1.5,tbt_s=0.3,tbt_stat=p99,attainment=0.9 (default: the "
        f"scenario's [slo] and attainment {DEFAULT_SLO_TARGET})",
    )  # fmt: skip
    p.add_argument(
        "--seeds", type=int, default=3, help="seeds per point (the scenario's seed and the next ones)"
    )
    p.add_argument("--rate", type=float, help="find the smallest cluster that holds this rate (req/s)")
    p.add_argument("--tolerance", type=float, default=0.05, help="rate search: relative width to stop at")
    p.add_argument("--start-rate", type=float, help="rate search: first rate tried (default: the scenario's)")
    p.add_argument("--max-instances", type=int, default=0, help="size search: largest cluster (default 8x)")
    p.add_argument("--no-tune", action="store_true", help="only the fixed configuration of each baseline")
    p.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 1,
        help="runs in parallel worker processes (default: one per CPU; results do not depend on it)",
    )  # fmt: skip
    p.add_argument("--out", type=Path, help="write capacity.json and capacity.md into this folder")
    p.add_argument("--quiet", action="store_true", help="no progress output on stderr")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    p.set_defaults(func=run)


def slo_overrides(text: str) -> tuple[list[str], float]:
    """``--slo`` as scenario overrides, and the attainment target."""
    target = DEFAULT_SLO_TARGET
    out = []
    for item in filter(None, (x.strip() for x in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or key not in SLO_KEYS:
            raise ConfigurationError(
                f"--slo {item!r}: expected KEY=VALUE with KEY one of {', '.join(SLO_KEYS)}"
            )
        if key == "attainment":
            try:
                target = float(value)
            except ValueError:
                raise ConfigurationError(f"--slo attainment must be a number, got {value!r}") from None
            if not 0.0 < target <= 1.0:
                raise ConfigurationError(f"--slo attainment must be in (0, 1], got {value}")
        else:
            out.append(f"slo.{key}={value}")
    return out, target


def run(args: argparse.Namespace) -> int:
    if args.jobs < 1 or args.seeds < 1:
        raise ConfigurationError("--jobs and --seeds must be >= 1")
    if not 0.0 < args.tolerance < 1.0:
        raise ConfigurationError(f"--tolerance must be in (0, 1), got {args.tolerance}")
    slo, target = slo_overrides(args.slo)
    overrides = [*args.overrides, *slo]
    base = load_scenario(args.scenario, overrides)
    if base.workload.arrival == "trace" or base.workload.phases:
        raise ConfigurationError(
            f"{base.name}: capacity varies workload.rate_rps, which a trace replay or a phased "
            "workload ignores (use poisson or gamma arrivals)"
        )
    policies = name_list(args.policies, "policies")
    knobs = []
    for name in policies:
        s = load_scenario(args.scenario, overrides, name)
        build_components(s, [])  # the policy checks its parameters (and the cluster) now
        knobs.append((name, knob_of(s)))
    study = Study(
        scenario=args.scenario,
        overrides=tuple(overrides),
        target=target,
        seeds=tuple(base.seed + i for i in range(args.seeds)),
        instances=base.cluster.instances,
        tolerance=args.tolerance,
        start_rate=args.start_rate or base.workload.rate_rps,
        rate=args.rate,
        max_instances=args.max_instances,
    )
    rows = rows_for(knobs, tune=not args.no_tune)
    searches = {r.label: row_search(study, r) for r in rows}
    progress = None if args.quiet else Progress(sys.stderr, f"capacity {base.name}")
    wall0 = time.perf_counter()
    results, runs = run_searches(
        searches,
        {r.label: expected_runs(study, r) for r in rows},
        jobs=args.jobs,
        progress=progress,
        describe=lambda label, res: f"{label} done: {', '.join(_short(b) for b in res.values())}",
    )
    wall = time.perf_counter() - wall0
    ordered = [results[r.label] for r in rows]
    print(_heading(base, study, runs, wall))
    print()
    table = _table(base, study, ordered, args.markdown)
    print(table)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        doc = study_document(study, ordered, runs, wall)
        (args.out / "capacity.json").write_text(json.dumps(doc, indent=2) + "\n")
        md = _heading(base, study, runs, wall) + "\n\n" + _table(base, study, ordered, True) + "\n"
        (args.out / "capacity.md").write_text(md)
        print(f"wrote {args.out}/: capacity.json, capacity.md", file=sys.stderr)
    return 0


def _short(v: float) -> str:
    return "none" if v != v else f"{v:.3g}"


def _table(base: Scenario, study: Study, results: list[RowResult], markdown: bool) -> str:
    if study.rate is None:
        return capacity_table(study, results, markdown=markdown)
    hw = step_model(base).hw
    return size_table(study, results, base.cluster.tp, hw.usd_per_hour, markdown=markdown)


def _heading(base: Scenario, study: Study, runs: int, wall_s: float) -> str:
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
