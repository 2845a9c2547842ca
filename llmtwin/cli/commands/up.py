"""``llmtwin up SCENARIO``: the twin as services over NATS, on this machine, with no set-up.

Starts a private nats-server and every service as its own process (conductor, generator,
balancer, device shards, planner), runs the scenario (or, with ``--policies``, one run per
policy, compared), shows live progress, writes the same outputs as ``simulate``/``compare``,
and stops everything -- also on Ctrl-C or when a service fails.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from llmtwin.cli.commands.compare import name_list
from llmtwin.cli.commands.simulate import add_run_args
from llmtwin.errors import ConfigurationError
from llmtwin.report.outputs import RunOutput, describe_written, write_compare, write_run
from llmtwin.report.summary import summarize
from llmtwin.report.tables import compare_table, summary_table
from llmtwin.runtime.processes import parse_cpus
from llmtwin.runtime.up import Launcher, UpRun, cluster_layout
from llmtwin.scenario.dump import dump_scenario, scenario_toml
from llmtwin.scenario.loader import load_scenario
from llmtwin.scenario.spec import Scenario
from proto.control import RunSpec
from services.cluster import ClusterFactory


def parse_speed(text: str) -> float:
    """``max`` -> inf; else a positive number of virtual seconds per wall second."""
    if text.strip().lower() == "max":
        return math.inf
    try:
        speed = float(text)
    except ValueError:
        speed = -1.0
    if not speed > 0:
        raise ConfigurationError(f"--speed takes a positive number or 'max', got {text!r}")
    return speed


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "up",
        help="run a scenario as services over an embedded NATS server (one process per service)",
        description="Start nats-server and every service as its own process, run SCENARIO, "
        "write the same outputs as `simulate` (or `compare` with --policies), stop everything.",
    )
    add_run_args(p)
    p.add_argument("--policy", help="serving policy (colocated, disaggregated, accellm, ...)")
    p.add_argument(
        "--policies", metavar="A,B,C",
        help="run each policy in turn on the same services and compare them (first = baseline)",
    )  # fmt: skip
    p.add_argument(
        "--speed", default="max",
        help="virtual seconds per wall second: 1 = real time, 10, or max (default) as fast as possible",
    )  # fmt: skip
    p.add_argument(
        "--device-processes", type=int, default=1, help="device service processes (instances sharded)"
    )
    p.add_argument(
        "--cpus", default="all", metavar="LIST",
        help="run nats-server and every service on these CPUs, e.g. 0 or 0-1 (default: all, the OS decides); "
        "one CPU is often faster, see docs/architecture.md",
    )  # fmt: skip
    p.add_argument("--logs", type=Path, help="keep the services' logs in this folder (default: OUT/logs)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    speed = parse_speed(args.speed)
    cpus = parse_cpus(args.cpus)
    if args.device_processes < 1:
        raise ConfigurationError(f"--device-processes must be >= 1, got {args.device_processes}")
    if args.policy and args.policies:
        raise ConfigurationError("give --policy or --policies, not both")
    log_dir = args.logs or (args.out / "logs" if args.out is not None else None)
    policies: list[str | None] = (
        list(name_list(args.policies, "policies")) if args.policies else [args.policy]
    )
    # Load (and so validate) every variant before any process starts.
    scenarios = [load_scenario(args.scenario, args.overrides, p) for p in policies]
    specs = [RunSpec("cluster", args.scenario, tuple(args.overrides), p) for p in policies]
    factory = ClusterFactory()
    layout = cluster_layout(args.device_processes, any(factory.needs_planner(s) for s in specs))
    runs = [
        UpRun(f"{s.name}/{s.policy.name}", spec, s.workload.requests)
        for s, spec in zip(scenarios, specs, strict=True)
    ]
    if not args.quiet:
        print(_headline(scenarios[0], [s.policy.name for s in scenarios]), file=sys.stderr)
    launcher = Launcher(layout, speed=speed, stream=sys.stderr, quiet=args.quiet, log_dir=log_dir, cpus=cpus)
    outcomes = launcher.run(runs)
    outs = []
    for scenario, spec, outcome in zip(scenarios, specs, outcomes, strict=True):
        result = factory.result(spec, outcome)
        outs.append(
            RunOutput(
                result, summarize(result, scenario.slo), dump_scenario(scenario), scenario_toml(scenario)
            )
        )
    if len(outs) == 1:
        print(summary_table(outs[0].summary))
    else:
        print(compare_table([o.summary for o in outs]))
    if args.out is not None:
        if len(outs) == 1:
            files = write_run(args.out, outs[0], plots=not args.no_plots)
        else:
            files = write_compare(args.out, outs, plots=not args.no_plots)
        print(describe_written(args.out, files), file=sys.stderr)
        if log_dir is not None:
            print(f"service logs in {log_dir}/", file=sys.stderr)
    return 0


def _headline(s: Scenario, policies: list[str]) -> str:
    """One line saying what is about to run, for a user who did not read the scenario file."""
    c, w = s.cluster, s.workload
    load = f"{w.requests} requests" if w.requests is not None else f"{w.duration_s:g} s of arrivals"
    return (
        f"llmtwin up: scenario {s.name!r}: {s.model} on {c.instances} x {c.hardware} (TP{c.tp}), {load} "
        f"({w.arrival} {w.rate_rps:g} req/s, {w.lengths} lengths); policies: {', '.join(policies)}; "
        "each service its own process on an embedded nats-server"
    )
