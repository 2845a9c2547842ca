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

from llmtwin.cli.commands import COMMANDS
from llmtwin.cli.commands.compare import name_list
from llmtwin.cli.commands.simulate import add_jobs_arg, add_policies_arg, add_scenario_args, add_table_args
from llmtwin.errors import ConfigurationError
from llmtwin.scenario.spec import DEFAULT_SLO_TARGET

SLO_KEYS = ("ttft_s", "tbt_s", "tbt_stat", "attainment")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "capacity",
        help=COMMANDS["capacity"].help,
        description="Per policy and seed: the highest arrival rate at which the SLO attainment target "
        "holds (bisection over rate), or with --rate the fewest instances that hold that rate. Baselines "
        "with a configuration knob (disaggregated split, chunked-prefill budget) appear at the "
        "scenario's fixed setting and tuned by the same search.",
    )
    add_scenario_args(p, "paper-h100-conv")
    add_policies_arg(p)
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
    add_jobs_arg(p, os.cpu_count() or 1)
    p.add_argument("--out", type=Path, help="write capacity.json and capacity.md into this folder")
    add_table_args(p)
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
    # Imported here: `llmtwin --help` and the other commands need none of it.
    from llmtwin.capacity.driver import run_study
    from llmtwin.capacity.study import make_study
    from llmtwin.capacity.table import study_document, study_heading, study_table
    from llmtwin.report.progress import RunProgress

    if args.jobs < 1 or args.seeds < 1:
        raise ConfigurationError("--jobs and --seeds must be >= 1")
    if not 0.0 < args.tolerance < 1.0:
        raise ConfigurationError(f"--tolerance must be in (0, 1), got {args.tolerance}")
    slo, target = slo_overrides(args.slo)
    study, rows, base = make_study(
        args.scenario,
        [*args.overrides, *slo],
        name_list(args.policies, "policies"),
        target=target,
        seeds=args.seeds,
        tolerance=args.tolerance,
        start_rate=args.start_rate,
        rate=args.rate,
        max_instances=args.max_instances,
        tune=not args.no_tune,
    )
    wall0 = time.perf_counter()
    with RunProgress(1, sys.stderr, enabled=not args.quiet) as progress:
        ordered, runs = run_study(study, rows, jobs=args.jobs, progress=progress)
    wall = time.perf_counter() - wall0
    print(study_heading(base, study, runs, wall))
    print()
    table = study_table(base, study, ordered, args.markdown)
    print(table)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        doc = study_document(study, ordered, runs, wall)
        (args.out / "capacity.json").write_text(json.dumps(doc, indent=2) + "\n")
        md = study_heading(base, study, runs, wall) + "\n\n" + study_table(base, study, ordered, True) + "\n"
        (args.out / "capacity.md").write_text(md)
        print(f"wrote {args.out}/: capacity.json, capacity.md", file=sys.stderr)
    return 0
