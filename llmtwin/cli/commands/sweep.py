"""``llmtwin sweep SCENARIO --rates r1,r2,...``: latency-versus-load curves for one or more policies."""

from __future__ import annotations

import argparse
import math
import sys

from llmtwin.cli.commands import COMMANDS
from llmtwin.cli.commands.compare import name_list
from llmtwin.cli.commands.simulate import add_jobs_arg, add_run_args, check_jobs
from llmtwin.cli.input_checks import check_fits, check_out
from llmtwin.errors import ConfigurationError
from llmtwin.scenario.spec import DEFAULT_SLO_TARGET


def rate_list(text: str) -> list[float]:
    """``"1,2.5"`` -> ``[1.0, 2.5]``; every rate must be a positive number."""
    try:
        rates = [float(x) for x in text.split(",")]
    except ValueError:
        raise ConfigurationError(f"--rates: expected comma-separated numbers, got {text!r}") from None
    if not all(r > 0 and math.isfinite(r) for r in rates):
        raise ConfigurationError(f"--rates: every rate must be > 0, got {text!r}")
    return rates


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("sweep", help=COMMANDS["sweep"].help)
    add_run_args(p)
    p.add_argument("--rates", help="arrival rates, req/s, comma-separated (default: the scenario's [sweep])")
    p.add_argument("--policies", help="comma-separated policies (default: the scenario's policy)")
    p.add_argument("--versus", metavar="POLICY", help="also print POLICY's change against each other policy")
    p.add_argument(
        "--slo-target", type=float, default=DEFAULT_SLO_TARGET,
        help="fraction of requests within both SLOs that defines a policy's capacity",
    )  # fmt: skip
    add_jobs_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from llmtwin.report.execute import run_all, run_summary
    from llmtwin.report.outputs import describe_written, write_sweep
    from llmtwin.report.tables import capacity_table, sweep_table, versus_table
    from llmtwin.scenario.loader import load_scenario

    jobs = check_jobs(args.jobs)
    check_out(args.out)
    if not 0.0 < args.slo_target <= 1.0:
        raise ConfigurationError(f"--slo-target must be in (0, 1], got {args.slo_target}")
    base = load_scenario(args.scenario, args.overrides)
    if base.workload.arrival == "trace":
        raise ConfigurationError(
            f"{base.name}: sweep varies workload.rate_rps, which a trace replay ignores "
            "(use poisson or gamma arrivals, or vary workload.time_scale with --set)"
        )
    rates = rate_list(args.rates) if args.rates else list(base.sweep.rate_rps)
    if not rates:
        raise ConfigurationError(f"{base.name}: no rates (give --rates or a [sweep] rate_rps list)")
    policies = name_list(args.policies, "policies") if args.policies else [base.policy.name]
    if args.versus is not None and args.versus not in policies:
        raise ConfigurationError(
            f"--versus {args.versus}: not one of the swept policies ({', '.join(policies)})"
        )
    # Load (and so validate) every point before the first long run starts.
    labelled = [
        (
            f"{base.name}/{p}@{r:g}",
            load_scenario(args.scenario, [*args.overrides, f"workload.rate_rps={r!r}"], p),
        )
        for r in rates
        for p in policies
    ]
    check_fits([s for _, s in labelled], copies=min(jobs, len(labelled)))
    summaries = run_all(run_summary, labelled, jobs=jobs, stream=sys.stderr, show_progress=not args.quiet)
    points = list(zip([r for r in rates for _ in policies], summaries, strict=True))
    print(sweep_table(points, markdown=args.markdown))
    if args.versus is not None:
        print()
        print(versus_table(points, args.versus, markdown=args.markdown))
    print()
    print(capacity_table(points, args.slo_target, markdown=args.markdown))
    if args.out is not None:
        files = write_sweep(args.out, base.name, points, slo_target=args.slo_target, plots=not args.no_plots)
        print(describe_written(args.out, files), file=sys.stderr)
    return 0
