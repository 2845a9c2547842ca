"""``llmtwin faults SCENARIO --fault engine=3@30s,recover=90s``: what a failure costs each policy.

Each policy (and seed) runs twice, with the fault and without (the same requests), and the table
compares them (``llmtwin/faults/impact.py``): requests affected, recomputed and kept, KV tokens
recomputed, the latency added to the affected requests, the run's E2E p99 and SLO attainment,
and the capacity lost. Figures are means over the seeds.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from llmtwin.cli.commands import COMMANDS
from llmtwin.cli.commands.compare import name_list
from llmtwin.cli.commands.simulate import (
    add_jobs_arg,
    add_policies_arg,
    add_scenario_args,
    add_table_args,
    check_jobs,
)
from llmtwin.errors import ConfigurationError
from llmtwin.scenario.overrides import fault_override
from llmtwin.scenario.spec import Scenario

if TYPE_CHECKING:
    from llmtwin.faults.impact import FaultImpact
    from llmtwin.report.progress import Progress


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("faults", help=COMMANDS["faults"].help)
    add_scenario_args(p, "paper-h100-conv")
    p.add_argument(
        "--fault", action="append", default=[], metavar="engine=I@Ts[,recover=Ts]",
        help="instance I fails at T s of virtual time (back at the recover time, empty); repeatable",
    )  # fmt: skip
    add_policies_arg(p)
    p.add_argument("--seeds", type=int, default=1, help="seeds (the scenario's and the next ones)")
    p.add_argument("--out", type=Path, help="write faults.json into this folder")
    add_table_args(p)
    add_jobs_arg(p)
    p.set_defaults(func=run)


def impact_of(scenario: Scenario, progress: Progress | None = None) -> FaultImpact:
    """The scenario with its faults against the same scenario without them."""
    from llmtwin.cluster.run import run_scenario
    from llmtwin.faults.impact import fault_impact

    faulty = run_scenario(scenario)
    clean = run_scenario(dataclasses.replace(scenario, faults=()))
    return fault_impact(faulty, clean, scenario.slo)


def run(args: argparse.Namespace) -> int:
    from llmtwin.report.execute import run_all
    from llmtwin.scenario.loader import load_scenario

    jobs = check_jobs(args.jobs)
    if not args.fault:
        raise ConfigurationError("faults: give at least one --fault engine=I@Ts[,recover=Ts]")
    if args.seeds < 1:
        raise ConfigurationError(f"--seeds must be >= 1, got {args.seeds}")
    overrides = [*args.overrides, fault_override(args.fault)]
    policies = name_list(args.policies, "policies")
    base = load_scenario(args.scenario, overrides)
    labelled = [
        (
            f"{base.name}/{p}/seed {base.seed + k}",
            load_scenario(args.scenario, [*overrides, f"seed={base.seed + k}"], p),
        )
        for p in policies
        for k in range(args.seeds)
    ]
    impacts = run_all(impact_of, labelled, jobs=jobs, stream=sys.stderr, show_progress=not args.quiet)
    by_policy = [impacts[i * args.seeds : (i + 1) * args.seeds] for i in range(len(policies))]
    faults = ", ".join(args.fault)
    print(f"{base.name}: {faults}; {args.seeds} seed(s); each policy with the fault against without it")
    print()
    print(impact_table(by_policy, markdown=args.markdown))
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        doc = {"scenario": base.name, "faults": args.fault, "runs": [dataclasses.asdict(i) for i in impacts]}
        (args.out / "faults.json").write_text(json.dumps(doc, indent=2) + "\n")
        print(f"wrote {args.out}/: faults.json", file=sys.stderr)
    return 0


def impact_table(by_policy: Sequence[Sequence[FaultImpact]], markdown: bool = False) -> str:
    """One row per policy; ``a / b`` cells are with the fault / without it (means over seeds)."""
    header = [
        "policy", "requests hit", "recomputed", "KV recomputed (k tok)", "kept", "redirected",
        "hit: E2E added (s)", "hit: E2E p99 (s)", "hit: longest gap p99 (s)", "all: E2E p99 (s)",
        "SLO attainment (%)", "tokens lost in outage (%)", "down (device-s)", "unfinished",
    ]  # fmt: skip
    rows = []
    for runs in by_policy:

        def mean(get: Callable[[FaultImpact], float], runs: Sequence[FaultImpact] = runs) -> float:
            return sum(get(r) for r in runs) / len(runs)

        def pair(get: Callable[[FaultImpact], tuple[float, float]], fmt: str, scale: float = 1.0) -> str:
            a = mean(lambda r: get(r)[0]) * scale
            b = mean(lambda r: get(r)[1]) * scale
            return f"{fmt.format(a)} / {fmt.format(b)}"

        rows.append(
            [
                runs[0].policy,
                f"{mean(lambda r: r.affected):.0f}",
                f"{mean(lambda r: r.recomputed):.0f}",
                f"{mean(lambda r: r.recomputed_kv_tokens) / 1e3:.1f}",
                f"{mean(lambda r: r.kept):.0f}",
                f"{mean(lambda r: r.redirected):.0f}",
                f"{mean(lambda r: r.affected_e2e_added_s):+.2f}",
                pair(lambda r: r.affected_e2e_p99_s, "{:.2f}"),
                pair(lambda r: r.affected_gap_p99_s, "{:.3f}"),
                pair(lambda r: r.e2e_p99_s, "{:.2f}"),
                pair(lambda r: r.slo_attainment, "{:.1f}", 100.0),
                f"{mean(lambda r: r.tokens_lost_fraction) * 100:.1f}",
                f"{mean(lambda r: r.down_device_s):.0f}",
                f"{mean(lambda r: r.unfinished):.0f}",
            ]
        )
    from llmtwin.report.tables import format_table

    return format_table(header, rows, markdown=markdown)
