"""``llmtwin run SCENARIO --nats URL``: one run on services already attached to a NATS server.

What compose's one-shot ``run`` service and a deployment over several hosts call: the services
were started elsewhere (``docker compose up``, ``llmtwin service ROLE --nats URL``); this
command connects as the ``controller`` user, checks a service of every role the run needs is
there (else one line naming what is missing, exit 2), drives the run with the same live progress
as ``up`` and writes the same outputs as ``simulate``. The scenario is checked here first; the
services load it again themselves (a scenario file must be readable by them too, inside their
``scenario_dirs``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from llmtwin.cli.commands import COMMANDS
from llmtwin.cli.commands.simulate import add_run_args
from llmtwin.cli.commands.up import (
    add_metrics_arg,
    add_speed_arg,
    named_dirs,
    parse_speed,
    report_outcomes,
)
from llmtwin.cli.input_checks import check_out
from llmtwin.errors import ConfigurationError
from llmtwin.report.plot_worker import plot_worker
from llmtwin.runtime.attached import Attached, drive
from llmtwin.runtime.run_size import RunLimits, check_run_size
from llmtwin.runtime.runs import UpRun
from llmtwin.scenario.loader import load_scenario
from proto.control import RunSpec
from services.cluster import ClusterFactory
from services.config import ControllerConfig, add_arguments, from_sources


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "run",
        help=COMMANDS["run"].help,
        description="Drive one run of SCENARIO on services already attached to a NATS server "
        "(compose, `llmtwin service`), show its progress, write the same outputs as `simulate`. "
        "Every connection flag can also be set as TWIN_<FLAG> (TWIN_NATS_URL, TWIN_NKEY_SEED_FILE, "
        "TWIN_NKEY_SEED, ...).",
    )
    add_run_args(p)
    p.add_argument("--policy", help="serving policy (colocated, disaggregated, accellm, ...)")
    add_speed_arg(p)
    p.add_argument(
        "--wait", type=float, default=15.0, metavar="SECONDS",
        help="how long to wait for the services to be heard from (they announce themselves every second)",
    )  # fmt: skip
    add_metrics_arg(p)
    add_arguments(p, [ControllerConfig])
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    speed = parse_speed(args.speed)
    if not args.wait > 0:
        raise ConfigurationError(f"--wait must be a positive number of seconds, got {args.wait}")
    cfg = from_sources(ControllerConfig, "controller", vars(args), os.environ)
    check_out(args.out)
    scenario = load_scenario(args.scenario, args.overrides, args.policy)
    spec = RunSpec("cluster", args.scenario, tuple(args.overrides), args.policy)
    factory = ClusterFactory(limits=RunLimits(scenario_dirs=tuple(named_dirs(args.scenario, args.overrides))))
    check_run_size(scenario, factory.limits)
    roles = ["conductor", "generator", "balancer", "device"]
    if factory.needs_planner(spec):
        roles.append("planner")
    label = f"{scenario.name}/{scenario.policy.name}"
    if not args.quiet:
        print(
            f"llmtwin run: {label} on the services at {cfg.nats_url} (speed {args.speed})",
            file=sys.stderr,
        )
    at = Attached(cfg, roles, speed, metrics=args.metrics, wait_s=args.wait)
    # Like simulate and up: the plot worker imports matplotlib while the run goes on.
    with plot_worker(args.out is not None and not args.no_plots) as plotter:
        todo = UpRun(label, spec, scenario.workload.requests)
        outcome = asyncio.run(drive(at, todo, sys.stderr, args.quiet))
        report_outcomes(args, factory, [scenario], [spec], [outcome], plotter)
    return 0
