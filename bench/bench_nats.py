"""Speed of the twin over NATS (every service its own process) against the in-process run.

    .venv/bin/python bench/bench_nats.py                      # w1: 10,000 requests
    .venv/bin/python bench/bench_nats.py --repeat 3           # 3 alternating pairs, then medians
    .venv/bin/python bench/bench_nats.py --cpus 0             # services and nats-server on CPU 0
    .venv/bin/python bench/bench_nats.py --set workload.requests=2000 --device-processes 2
    .venv/bin/python bench/bench_nats.py --lockstep             # no service acting for the balancer
    .venv/bin/python bench/bench_nats.py --balancer-on-device   # the experiment below

Starts an embedded nats-server and the conductor, generator, balancer and device services as
separate processes (the layout of ``llmtwin up``), then, ``--repeat`` times, runs the scenario
in-process (``run_scenario``) and over the services, checks that both give the same
requests.csv, and prints: simulated requests per wall second for both, their ratio, bus
messages per window and per second (from the server's /varz), the per-window overhead of the
bus, the CPU seconds of every process, and the load average before the pair. The figures and
where the time goes are in docs/architecture.md ("Cost and measured speed"). Wall times exclude process
start-up (the services are up before the clock starts) but include the run's set-up (every
service builds its components) and the collection of results.

The layout is ``llmtwin up``'s: device-1 acts for the balancer, which steps behind it
(docs/architecture.md, "The balancer's decisions beside the instances"); ``--lockstep`` starts
device-1 without ``--act``, so that every dispatch is a round trip through the conductor, as
before. ``--balancer-on-device`` is an experiment, not a layout ``llmtwin up`` offers: the balancer
component is hosted by the (single) device service beside the instances (``--components
balancer,instance-*``) and no balancer service runs. Every window but the generator's is then
one service's alone, so horizon grants cover the run. What it measures is what the round trips
of the balancer's dispatches cost ``up`` (docs/performance.md, "What the dispatch round trips
cost").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from llmtwin.cluster.run import run_scenario
from llmtwin.report.writers import requests_csv
from llmtwin.runtime.embedded_nats import EmbeddedNats
from llmtwin.runtime.layout import cluster_layout
from llmtwin.runtime.processes import Supervisor, parse_cpus
from llmtwin.scenario.loader import load_scenario
from llmtwin.scenario.spec import Scenario
from proto.control import RunOutcome, RunRequest, RunSpec
from services.client import RunClient
from services.cluster import ClusterFactory
from services.nats_bus import NatsOptions, connect


def varz(monitor_url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{monitor_url}/varz", timeout=5) as r:
        doc: dict[str, Any] = json.loads(r.read())
    return doc


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used (Linux /proc; 0 elsewhere)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def metric(port: int, name: str) -> float:
    """One sample of a service's /metrics (0 when absent)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


def load_avg() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


@dataclass
class Pair:
    """One in-process run and one run over NATS, and what was measured around them."""

    load: float
    local_wall: float
    nats_wall: float
    outcome: RunOutcome
    same: bool
    x: dict[str, float]


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.scenario: Scenario = load_scenario(args.scenario, args.overrides, args.policy)
        self.spec = RunSpec("cluster", args.scenario, tuple(args.overrides), args.policy)
        self.cpus = parse_cpus(args.cpus)

    async def run(self) -> list[Pair]:
        factory = ClusterFactory()
        layout = cluster_layout(self.args.device_processes, factory.needs_planner(self.spec))
        if self.args.lockstep or self.args.balancer_on_device:
            layout = [
                replace(p, flags=tuple(f for f in p.flags if f not in ("--act", "balancer"))) for p in layout
            ]
        if self.args.balancer_on_device:
            layout = [p for p in layout if p.role != "balancer"]
            layout = [replace(p, flags=("--components", "balancer,instance-*")) if p.role == "device" else p
                      for p in layout]  # fmt: skip
        pairs = []
        with tempfile.TemporaryDirectory() as tmp, EmbeddedNats(cpus=self.cpus, monitor=True) as nats:
            sup = Supervisor(Path(tmp), cpus=self.cpus)
            bus = await connect(NatsOptions(nats.url, "bench"))
            client = RunClient(bus)
            await client.start()
            try:
                for p in layout:
                    sup.spawn(p.name, p.argv(nats.url))
                await client.wait_for([p.name for p in layout], 120)
                procs = {c.name: c.pid for c in sup.children}
                procs["nats-server"] = nats.proc.pid if nats.proc is not None else 0
                hosts = [p.name for p in layout if p.role in ("generator", "balancer", "device")]
                for i in range(self.args.repeat):
                    pairs.append(await self.pair(i, client, nats.monitor_url, procs, hosts))
                    self.report(pairs[-1])
            finally:
                await client.close()
                await bus.close()
                sup.stop_all()
        return pairs

    async def pair(
        self, i: int, client: RunClient, monitor: str, procs: dict[str, int], hosts: list[str]
    ) -> Pair:
        load = load_avg()
        t0 = time.perf_counter()
        local = run_scenario(self.scenario)
        local_wall = time.perf_counter() - t0

        conductor = client.ports["conductor"]
        ports = {h: client.ports[h] for h in hosts}
        window_sum0 = metric(conductor, "twin_conductor_window_duration_seconds_sum")
        step_sum0 = sum(metric(p, "twin_host_step_duration_seconds_sum") for p in ports.values())
        before = varz(monitor)
        cpu0 = {k: cpu_s(v) for k, v in procs.items()}
        t0 = time.perf_counter()
        outcome = await client.run(RunRequest(f"bench-{i}", self.spec))
        nats_wall = time.perf_counter() - t0
        after = varz(monitor)
        x = {
            "bus_msgs": float(after["in_msgs"] - before["in_msgs"]),
            "bus_deliveries": float(after["out_msgs"] - before["out_msgs"]),
            "bus_bytes": float(after["in_bytes"] - before["in_bytes"]),
            "window_latency_sum_s": metric(conductor, "twin_conductor_window_duration_seconds_sum")
            - window_sum0,
            "step_s": sum(metric(p, "twin_host_step_duration_seconds_sum") for p in ports.values())
            - step_sum0,
            **{f"cpu_s:{k}": cpu_s(v) - cpu0[k] for k, v in procs.items()},
        }
        remote = ClusterFactory().result(self.spec, outcome)
        same = requests_csv(remote, self.scenario.slo) == requests_csv(local, self.scenario.slo)
        return Pair(load, local_wall, nats_wall, outcome, same, x)

    def report(self, p: Pair) -> None:
        n = self.scenario.workload.requests
        stats = p.outcome.stats
        windows, loop_s, x = stats["windows"], stats["windows_wall_s"], p.x
        rounds = stats.get("rounds", windows)
        print(f"scenario {self.scenario.name}/{self.scenario.policy.name}: {n} requests, {windows:.0f} windows "
              f"({rounds:.0f} conductor round trips, the rest run ahead under horizon grants), "
              f"{stats['messages']:.0f} envelopes; requests.csv identical: {p.same}; load average {p.load:.2f}")  # fmt: skip
        print(f"in-process : {p.local_wall:8.2f} s wall  {n / p.local_wall:8.0f} requests/s")
        print(f"over NATS  : {p.nats_wall:8.2f} s wall  {n / p.nats_wall:8.0f} requests/s  "
              f"(set-up {stats['setup_wall_s']:.2f} s, windows {loop_s:.2f} s, collect {stats['collect_wall_s']:.2f} s; "
              f"{self.args.device_processes} device process(es), CPUs {self.args.cpus})")  # fmt: skip
        print(f"ratio      : {p.nats_wall / p.local_wall:8.2f} x slower over NATS")
        print(f"bus        : {x['bus_msgs']:.0f} messages published ({x['bus_msgs'] / windows:.2f} per window), "
              f"{x['bus_deliveries']:.0f} delivered, {x['bus_msgs'] / loop_s:,.0f} msgs/s published, "
              f"{x['bus_bytes'] / 1e6:.1f} MB")  # fmt: skip
        print(f"per window : {1e6 * loop_s / windows:6.0f} us wall over NATS vs {1e6 * p.local_wall / windows:.0f} us "
              f"in-process (overhead {1e6 * (loop_s - p.local_wall) / windows:.0f} us)")  # fmt: skip
        print(f"per round  : {1e6 * loop_s / rounds:6.0f} us wall; grant->done latency "
              f"{1e6 * x['window_latency_sum_s'] / rounds:.0f} us, of which component steps "
              f"{1e6 * x['step_s'] / rounds:.0f} us")  # fmt: skip
        cpu = ", ".join(f"{k[6:]} {v:.1f}" for k, v in x.items() if k.startswith("cpu_s:"))
        print(f"CPU seconds during the run: {cpu} (on {os.cpu_count()} cores)", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", default="w1")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--policy")
    ap.add_argument("--device-processes", type=int, default=1)
    ap.add_argument(
        "--lockstep",
        action="store_true",
        help="no service acting for the balancer (every dispatch a round trip)",
    )
    ap.add_argument(
        "--balancer-on-device", action="store_true",
        help="experiment: the balancer component hosted by the device service (one device process)",
    )  # fmt: skip
    ap.add_argument("--cpus", default="all", help="CPUs of nats-server and the services (e.g. 0), or all")
    ap.add_argument("--repeat", type=int, default=1, help="alternating pairs of runs (medians printed)")
    args = ap.parse_args()
    if args.balancer_on_device and args.device_processes != 1:
        ap.error("--balancer-on-device needs --device-processes 1")
    bench = Bench(args)
    pairs = asyncio.run(bench.run())
    if len(pairs) > 1:
        n = bench.scenario.workload.requests
        local = statistics.median(p.local_wall for p in pairs)
        remote = statistics.median(p.nats_wall for p in pairs)
        ratio = statistics.median(p.nats_wall / p.local_wall for p in pairs)
        print(f"medians of {len(pairs)} pairs: in-process {local:.2f} s ({n / local:,.0f} requests/s), "
              f"over NATS {remote:.2f} s ({n / remote:,.0f} requests/s), ratio {ratio:.2f} x; "
              f"load averages {', '.join(f'{p.load:.2f}' for p in pairs)}")  # fmt: skip
    return 0 if all(p.same for p in pairs) else 1


if __name__ == "__main__":
    sys.exit(main())
