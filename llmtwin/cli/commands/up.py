"""``llmtwin up SCENARIO``: the twin as services over NATS, on this machine, with no set-up.

Starts a private nats-server and every service as its own process (conductor, generator,
balancer, device shards, planner), each authenticated as its own user, runs the scenario (or,
with ``--policies``, one run per policy, compared), shows live progress, writes the same
outputs as ``simulate``/``compare``, and stops everything -- also on Ctrl-C or when the run
cannot go on. A service or nats-server that dies is started again and the results do not
change. Everything the run needs is checked before any process starts: the scenario, the
limits of a run, the memory, the output folder.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from concurrent.futures import Executor
from pathlib import Path

from llmtwin.cli.commands.compare import name_list
from llmtwin.cli.commands.simulate import add_run_args
from llmtwin.cli.input_checks import check_fits, check_out
from llmtwin.errors import ConfigurationError
from llmtwin.observe.families import METRICS_MODES
from llmtwin.report.outputs import RunOutput, describe_written, write_compare, write_run
from llmtwin.report.plot_worker import plot_worker
from llmtwin.report.summary import summarize
from llmtwin.report.tables import compare_table, summary_table
from llmtwin.runtime.layout import BALANCER_ACTOR, cluster_layout
from llmtwin.runtime.observing import ObserveOptions
from llmtwin.runtime.placement import AutoPlacement
from llmtwin.runtime.private_bus import TlsFiles
from llmtwin.runtime.processes import parse_cpus
from llmtwin.runtime.run_size import MAX_PROCESSES, check_files, check_run_size, looks_like_path
from llmtwin.runtime.runs import UpRun
from llmtwin.runtime.up import Launcher
from llmtwin.scenario.dump import dump_scenario, scenario_toml
from llmtwin.scenario.loader import load_scenario
from llmtwin.scenario.overrides import parse_override
from llmtwin.scenario.spec import Scenario
from proto.control import RunOutcome, RunSpec
from services.cluster import ClusterFactory
from services.config import ConductorConfig, from_sources


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
    add_speed_arg(p)
    p.add_argument(
        "--device-processes", type=int, default=1, help="device service processes (instances sharded)"
    )
    p.add_argument(
        "--cpus", default="auto", metavar="LIST",
        help="run nats-server and every service on these CPUs, e.g. 0 or 0-1; all: the OS decides; "
        "auto (default): on one CPU if a measured hand-off between processes is at least twice as "
        "fast there (with one device process), else as all; see docs/architecture.md",
    )  # fmt: skip
    p.add_argument("--logs", type=Path, help="keep the services' logs in this folder (default: OUT/logs)")
    p.add_argument(
        "--max-restarts", type=int, default=3, metavar="N",
        help="start a service (or nats-server) that dies again up to N times; the results do not change",
    )  # fmt: skip
    add_metrics_arg(p)
    obs = p.add_argument_group("watching the run (docs/observability.md)")
    obs.add_argument(
        "--observe", action="store_true",
        help="also start Prometheus (the system's `prometheus`) scraping every service, print its URL, "
        "keep its data in OUT/prometheus and draw every dashboard to OUT/dashboards/*.png at the end "
        "(OUT defaults to out/SCENARIO)",
    )  # fmt: skip
    obs.add_argument(
        "--linger", type=float, default=0.0, metavar="SECONDS",
        help="with --observe: keep the services and Prometheus up this long after the run (default: 0)",
    )  # fmt: skip
    obs.add_argument(
        "--prometheus-port", type=int, default=0, metavar="PORT",
        help="with --observe: Prometheus's port on 127.0.0.1 (default: 0, a free one)",
    )  # fmt: skip
    tls = p.add_argument_group("TLS (optional; the server stays on loopback)")
    tls.add_argument("--tls-cert", metavar="PEM", help="the server's certificate")
    tls.add_argument("--tls-key", metavar="PEM", help="the server's private key")
    tls.add_argument(
        "--tls-ca", metavar="PEM", help="the CA that signed the certificate (clients verify with it)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    speed = parse_speed(args.speed)
    auto_cpus = args.cpus.strip().lower() == "auto"
    cpus = None if auto_cpus else parse_cpus(args.cpus)
    if args.device_processes < 1:
        raise ConfigurationError(f"--device-processes must be >= 1, got {args.device_processes}")
    if args.max_restarts < 0:
        raise ConfigurationError(f"--max-restarts must be >= 0, got {args.max_restarts}")
    if args.policy and args.policies:
        raise ConfigurationError("give --policy or --policies, not both")
    tls = _tls(args)
    observe = _observe(args)
    if observe is not None:
        args.out = observe.out
    check_out(args.out)
    log_dir = args.logs or (args.out / "logs" if args.out is not None else None)
    policies: list[str | None] = (
        list(name_list(args.policies, "policies")) if args.policies else [args.policy]
    )
    # Load (and so validate) every variant, and check it fits, before any process starts.
    scenarios = [load_scenario(args.scenario, args.overrides, p) for p in policies]
    specs = [RunSpec("cluster", args.scenario, tuple(args.overrides), p) for p in policies]
    services = from_sources(ConductorConfig, "conductor", {}, os.environ)  # what the services accept
    dirs = named_dirs(args.scenario, args.overrides)
    limits = services.run_limits()
    for s in scenarios:
        check_run_size(s, limits)
        _check_processes(s, args.device_processes)
    check_files(args.scenario, args.overrides, dirs)
    check_fits(scenarios, copies=len(cluster_layout(args.device_processes, planner=True)) + 1)
    factory = ClusterFactory(limits=limits)
    layout = cluster_layout(args.device_processes, any(factory.needs_planner(s) for s in specs))
    runs = [
        UpRun(f"{s.name}/{s.policy.name}", spec, s.workload.requests)
        for s, spec in zip(scenarios, specs, strict=True)
    ]
    if not args.quiet:
        print(_headline(scenarios[0], [s.policy.name for s in scenarios]), file=sys.stderr)
    launcher = Launcher(
        layout,
        speed=speed,
        stream=sys.stderr,
        quiet=args.quiet,
        log_dir=log_dir,
        cpus=cpus,
        auto_cpus=AutoPlacement() if auto_cpus else None,
        tls=tls,
        env={"TWIN_SCENARIO_DIRS": os.pathsep.join(dirs)} if dirs else {},
        max_restarts=args.max_restarts,
        server_timeout_s=services.window_timeout_s,
        metrics=args.metrics,
        observe=observe,
        endpoints=args.out / "endpoints.json" if args.out is not None else None,
    )
    # The services first: they are forked from this process, which must not have a thread yet.
    # Then, like simulate, the plot worker imports matplotlib while the runs go on.
    with launcher.started(), plot_worker(args.out is not None and not args.no_plots) as plotter:

        def write(outcomes: list[RunOutcome]) -> None:
            """The results, written while the services are still up (before pictures and lingering)."""
            report_outcomes(args, factory, scenarios, specs, outcomes, plotter)
            if log_dir is not None and args.out is not None:
                print(f"service logs in {log_dir}/", file=sys.stderr)

        launcher.run(runs, after=write)
    return 0


def add_speed_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--speed", default="max",
        help="virtual seconds per wall second: 1 = real time, 10, or max (default) as fast as possible",
    )  # fmt: skip


def add_metrics_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--metrics", choices=METRICS_MODES, default="",
        help="fleet metrics naming: vllm+twin (vLLM's names: vLLM dashboards show the twin) or twin "
        "(the same families named twin_*, beside a real vLLM fleet) (default: the services' own, vllm+twin)",
    )  # fmt: skip


def report_outcomes(
    args: argparse.Namespace,
    factory: ClusterFactory,
    scenarios: Sequence[Scenario],
    specs: Sequence[RunSpec],
    outcomes: Sequence[RunOutcome],
    plotter: Executor | None = None,
) -> None:
    """The runs' results as ``simulate`` (one) or ``compare`` (several) prints and writes them
    (the plots rendered in ``plotter`` when given: ``report/plot_worker.py``)."""
    outs = []
    for scenario, spec, outcome in zip(scenarios, specs, outcomes, strict=True):
        result = factory.result(spec, outcome, detail=False)  # as simulate: no output needs the detail
        outs.append(
            RunOutput(
                result, summarize(result, scenario.slo), dump_scenario(scenario), scenario_toml(scenario)
            )
        )
    if len(outs) == 1:
        print(summary_table(outs[0].summary), flush=True)
    else:
        print(compare_table([o.summary for o in outs]), flush=True)
    if args.out is not None:
        if len(outs) == 1:
            files = write_run(args.out, outs[0], plots=not args.no_plots, plotter=plotter)
        else:
            files = write_compare(args.out, outs, plots=not args.no_plots, plotter=plotter)
        print(describe_written(args.out, files), file=sys.stderr)


def _observe(args: argparse.Namespace) -> ObserveOptions | None:
    """``--observe``'s options, checked (no prometheus binary, a busy port: one line)."""
    if not args.observe:
        if args.linger or args.prometheus_port:
            raise ConfigurationError("--linger and --prometheus-port go with --observe")
        return None
    out = args.out if args.out is not None else Path("out") / Path(args.scenario).stem
    opts = ObserveOptions(out, linger_s=args.linger, prometheus_port=args.prometheus_port)
    opts.check()
    return opts


def _tls(args: argparse.Namespace) -> TlsFiles | None:
    given = [args.tls_ca, args.tls_cert, args.tls_key]
    if not any(given):
        return None
    if not all(given):
        raise ConfigurationError("TLS needs --tls-ca, --tls-cert and --tls-key together")
    for flag, path in zip(("--tls-ca", "--tls-cert", "--tls-key"), given, strict=True):
        if not Path(path).is_file():
            raise ConfigurationError(f"{flag} {path}: no such file")
    return TlsFiles(*(str(Path(p).resolve()) for p in given))


def named_dirs(scenario: str, overrides: Sequence[str]) -> list[str]:
    """The folders of the files this command line names (the scenario, path-valued overrides):
    the only ones ``up``'s services may read files from."""
    named = [scenario] if looks_like_path(scenario) else []
    for text in overrides:
        _, value = parse_override(text)
        if isinstance(value, str) and looks_like_path(value):
            named.append(value)
    return sorted({str(Path(n).resolve().parent) for n in named})


def _check_processes(s: Scenario, device_processes: int) -> None:
    """One instance per device process at least; at most MAX_PROCESSES processes."""
    if device_processes > s.cluster.instances:
        raise ConfigurationError(
            f"--device-processes {device_processes}: scenario {s.name!r} has {s.cluster.instances} "
            "instances, one device process per instance at most"
        )
    if device_processes + 4 > MAX_PROCESSES:
        raise ConfigurationError(
            f"--device-processes {device_processes}: at most {MAX_PROCESSES} service processes per run"
        )


def _headline(s: Scenario, policies: list[str]) -> str:
    """One line saying what is about to run, for a user who did not read the scenario file."""
    c, w = s.cluster, s.workload
    load = f"{w.requests} requests" if w.requests is not None else f"{w.duration_s:g} s of arrivals"
    return (
        f"llmtwin up: scenario {s.name!r}: {s.model} on {c.instances} x {c.hardware} (TP{c.tp}), {load} "
        f"({w.arrival} {w.rate_rps:g} req/s, {w.lengths} lengths); policies: {', '.join(policies)}; "
        f"each service its own process on an embedded nats-server ({BALANCER_ACTOR} steps the "
        "balancer's windows, the balancer service behind it)"
    )
