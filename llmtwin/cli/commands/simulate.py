"""``llmtwin simulate SCENARIO``: run one scenario, print its summary, write its output folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from llmtwin.cli.commands import COMMANDS
from llmtwin.cli.input_checks import check_fits, check_out
from llmtwin.errors import ConfigurationError
from llmtwin.scenario.overrides import fault_override

ALL_POLICIES = "colocated,colocated-chunked,disaggregated,accellm"
"""The default of every command that compares the policies."""


def add_scenario_args(p: argparse.ArgumentParser, example: str = "w1, demo") -> None:
    """SCENARIO and --set: every command that runs a scenario."""
    p.add_argument("scenario", metavar="SCENARIO", help=f"scenario name (e.g. {example}) or a .toml path")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a scenario field, e.g. workload.requests=500 (repeatable)",
    )  # fmt: skip


def add_table_args(p: argparse.ArgumentParser) -> None:
    """--quiet and --markdown: every command that prints a table while it shows progress."""
    p.add_argument("--quiet", action="store_true", help="no progress output on stderr")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")


def add_policies_arg(p: argparse.ArgumentParser, help: str = "comma-separated policies") -> None:
    p.add_argument("--policies", default=ALL_POLICIES, help=f"{help} (default: {ALL_POLICIES})")


def add_run_args(p: argparse.ArgumentParser) -> None:
    """SCENARIO, --set, --fault, --out, --no-plots, --quiet, --markdown: shared by simulate,
    compare and sweep."""
    add_scenario_args(p)
    p.add_argument(
        "--fault", dest="overrides", action=FaultAction, metavar="engine=I@Ts[,recover=Ts]",
        help="simulate a failure: instance I goes down at T s of virtual time (back at the recover "
        "time, empty); repeatable",
    )  # fmt: skip
    p.add_argument("--out", type=Path, help="write result files into this folder")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    add_table_args(p)


class FaultAction(argparse.Action):
    """``--fault`` specs, all of them as one ``faults=[...]`` override among the ``--set`` ones."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        ns: argparse.Namespace,
        value: object,
        option: str | None = None,
    ) -> None:
        specs = [*getattr(ns, "fault_specs", []), str(value)]
        ns.fault_specs = specs
        overrides = [o for o in getattr(ns, "overrides", None) or [] if not o.startswith("faults=")]
        ns.overrides = [*overrides, fault_override(specs)]


def add_jobs_arg(p: argparse.ArgumentParser, default: int = 1) -> None:
    p.add_argument(
        "--jobs", type=int, default=default,
        help=f"runs in parallel worker processes (default: {default}; results do not depend on it)",
    )  # fmt: skip


def check_jobs(jobs: int) -> int:
    if jobs < 1:
        raise ConfigurationError(f"--jobs must be >= 1, got {jobs}")
    return jobs


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("simulate", help=COMMANDS["simulate"].help)
    add_run_args(p)
    p.add_argument("--policy", help="serving policy (colocated, disaggregated, accellm, ...)")
    p.add_argument("--json", action="store_true", help="print summary.json on stdout instead of the table")
    p.add_argument(
        "--band", action="store_true",
        help="also run the cluster with every iteration at the low and at the high edge of its "
        "calibration band (engine NAME@low / NAME@high) and report the range of each headline metric",
    )  # fmt: skip
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Imported here: `llmtwin --help` and the other commands need none of it.
    from llmtwin.cli.band import band_runs, band_table
    from llmtwin.cli.common import print_json
    from llmtwin.report.execute import run_all, run_output
    from llmtwin.report.outputs import describe_written, summary_document, write_run
    from llmtwin.report.plot_worker import plot_worker
    from llmtwin.report.tables import summary_table
    from llmtwin.scenario.loader import load_scenario

    check_out(args.out)
    scenario = load_scenario(args.scenario, args.overrides, args.policy)
    check_fits([scenario])
    label = f"{scenario.name}/{scenario.policy.name}"
    # Started first: it imports matplotlib while the scenario runs.
    with plot_worker(args.out is not None and not args.no_plots) as plotter:
        (out,) = run_all(
            run_output, [(label, scenario)], jobs=1, stream=sys.stderr, show_progress=not args.quiet
        )
        edges = (
            band_runs(args.scenario, args.overrides, args.policy, scenario.cluster.engine, args.quiet)
            if args.band
            else {}
        )
        if args.json:
            doc = summary_document(out)
            if edges:
                doc["band"] = {edge: run.summary.to_dict() for edge, run in edges.items()}
            print_json(doc)
        else:
            print(summary_table(out.summary, markdown=args.markdown))
            if edges:
                print(band_table(out.summary.to_dict(), {e: r.summary.to_dict() for e, r in edges.items()}))
        if args.out is not None:
            files = write_run(args.out, out, plots=not args.no_plots, plotter=plotter)
            print(describe_written(args.out, files), file=sys.stderr)
    return 0
