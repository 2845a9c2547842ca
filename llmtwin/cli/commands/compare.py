"""``llmtwin compare SCENARIO --policies a,b,c``: the same workload under several policies."""

from __future__ import annotations

import argparse
import sys

from llmtwin.cli.commands import COMMANDS
from llmtwin.cli.commands.simulate import add_jobs_arg, add_policies_arg, add_run_args, check_jobs
from llmtwin.cli.input_checks import check_fits, check_out
from llmtwin.errors import ConfigurationError


def name_list(text: str, what: str) -> list[str]:
    """``"a,b"`` -> ``["a", "b"]``; empty items and repeats are errors."""
    names = [x.strip() for x in text.split(",")]
    if not all(names):
        raise ConfigurationError(f"--{what}: empty name in {text!r}")
    if len(set(names)) != len(names):
        raise ConfigurationError(f"--{what}: repeated name in {text!r}")
    return names


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("compare", help=COMMANDS["compare"].help)
    add_run_args(p)
    add_policies_arg(p, "comma-separated policies; the first is the baseline of the %% columns")
    add_jobs_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from llmtwin.report.execute import run_all, run_output
    from llmtwin.report.outputs import describe_written, write_compare
    from llmtwin.report.plot_worker import plot_worker
    from llmtwin.report.tables import compare_table
    from llmtwin.scenario.loader import load_scenario

    jobs = check_jobs(args.jobs)
    check_out(args.out)
    # Load (and so validate) every variant before the first long run starts.
    scenarios = [
        load_scenario(args.scenario, args.overrides, p) for p in name_list(args.policies, "policies")
    ]
    check_fits(scenarios, copies=min(jobs, len(scenarios)))
    labelled = [(f"{s.name}/{s.policy.name}", s) for s in scenarios]
    with plot_worker(args.out is not None and not args.no_plots) as plotter:
        outs = run_all(run_output, labelled, jobs=jobs, stream=sys.stderr, show_progress=not args.quiet)
        print(compare_table([o.summary for o in outs], markdown=args.markdown))
        if args.out is not None:
            files = write_compare(args.out, outs, plots=not args.no_plots, plotter=plotter)
            print(describe_written(args.out, files), file=sys.stderr)
    return 0
