"""The services' own cost, without a transport: every service in this one process, over the
tests' in-memory bus, against the in-process run.

    .venv/bin/python bench/bench_services_in_memory.py                 # w1, 3 alternating pairs
    .venv/bin/python bench/bench_services_in_memory.py --policy accellm --repeat 1

Runs the scenario in-process (``run_scenario``), then the conductor, generator, balancer and one
device service (``llmtwin up``'s layout, the same classes: device-1 acting for the balancer,
which steps behind it) on ``tests/memory_bus.py``'s broker,
which hands each message to its subscriber's task on the same event loop: no socket, no
serialisation by a server, no process switch. Checks that both give the same requests.csv and
prints the windows' wall time, the rounds, and the time per round. What `llmtwin up` spends
above this is the transport (nats-py, nats-server, the processes taking turns on the CPU);
this is what the services' own code and the component steps cost, the part no transport can
remove (docs/performance.md, "`llmtwin up w1` and its 3x target"). A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from conftest import memory_connect
from service_builders import host, start_services

from llmtwin.cluster.run import run_scenario
from llmtwin.report.writers import requests_csv
from llmtwin.scenario.loader import load_scenario
from proto.control import RunSpec
from services.cluster import ClusterFactory

HOSTS = (
    host("generator", role="generator"),
    host("balancer", role="balancer"),
    host("device-1", role="device", shard="1/1", act="balancer"),
)


async def services_run(spec: RunSpec) -> tuple[float, dict[str, float], str]:
    """Wall seconds of one run over the in-memory bus (set-up, windows, collection), its stats,
    and its requests.csv."""
    svc = await start_services(memory_connect(), HOSTS, planner=ClusterFactory().needs_planner(spec))
    try:
        t0 = time.perf_counter()
        outcome = await svc.run(spec)
        wall = time.perf_counter() - t0
    finally:
        await svc.stop()
    if outcome.error:
        raise SystemExit(f"the run failed: {outcome.error}")
    scenario = load_scenario(spec.scenario, list(spec.overrides), spec.policy)
    return wall, outcome.stats, requests_csv(ClusterFactory().result(spec, outcome), scenario.slo)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", default="w1")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--policy")
    ap.add_argument("--repeat", type=int, default=3, help="alternating pairs of runs (medians printed)")
    args = ap.parse_args()
    scenario = load_scenario(args.scenario, args.overrides, args.policy)
    spec = RunSpec("cluster", args.scenario, tuple(args.overrides), args.policy)
    locals_, windows_, ok = [], [], True
    for _ in range(args.repeat):
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        local = run_scenario(scenario)
        local_wall = time.perf_counter() - t0
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:  # as the services run
            wall, stats, csv = runner.run(services_run(spec))
        same = csv == requests_csv(local, scenario.slo)
        ok &= same
        rounds, loop_s = stats["rounds"], stats["windows_wall_s"]
        print(f"{scenario.name}/{scenario.policy.name}, load {load:.2f}: in-process {local_wall:.2f} s; "
              f"services in memory {wall:.2f} s (set-up {stats['setup_wall_s']:.2f}, windows {loop_s:.2f}, "
              f"collect {stats['collect_wall_s']:.2f}); {stats['windows']:.0f} windows in {rounds:.0f} rounds, "
              f"{1e6 * loop_s / rounds:.0f} us per round; requests.csv identical: {same}", flush=True)  # fmt: skip
        locals_.append(local_wall)
        windows_.append(loop_s)
    if args.repeat > 1:
        print(f"medians of {args.repeat}: in-process {statistics.median(locals_):.2f} s, "
              f"windows over the in-memory bus {statistics.median(windows_):.2f} s")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
