"""Speed of the twin over NATS (every service its own process) against the in-process run.

    .venv/bin/python bench/bench_nats.py                      # w1: 10,000 requests
    .venv/bin/python bench/bench_nats.py --set workload.requests=2000 --device-processes 2

Runs the scenario once in-process (``run_scenario``) and once over an embedded nats-server
with the conductor, generator, balancer and device services as separate processes (the layout
of ``llmtwin up``), checks that both give the same requests.csv, and prints: simulated requests
per wall second for both, their ratio, bus messages per second (from the server's /varz), and
the per-window overhead of the bus. Wall times exclude process start-up (the services are up
before the clock starts) but include the run's set-up (every service builds its components)
and the collection of results.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Literal

from llmtwin.cluster.run import run_scenario
from llmtwin.report.writers import requests_csv
from llmtwin.runtime.natsd import EmbeddedNats
from llmtwin.runtime.processes import Supervisor
from llmtwin.runtime.up import cluster_layout
from llmtwin.scenario.loader import load_scenario
from proto.codec import Codec
from proto.control import RunOutcome, RunRequest, RunSpec
from services.bus import connect
from services.client import RunClient
from services.cluster import ClusterFactory


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


async def over_nats(
    spec: RunSpec, device_processes: int, logs: Path, routing: Literal["relay", "direct"]
) -> tuple[RunOutcome, dict[str, float]]:
    factory = ClusterFactory()
    layout = cluster_layout(device_processes, factory.needs_planner(spec))
    with EmbeddedNats() as nats:
        sup = Supervisor(logs)
        bus = await connect(nats.url, "bench")
        client = RunClient(bus, Codec())
        await client.start()
        try:
            for p in layout:
                sup.spawn(
                    p.name,
                    [
                        sys.executable,
                        "-m",
                        "services",
                        p.role,
                        "--nats",
                        nats.url,
                        "--name",
                        p.name,
                        *p.flags,
                    ],
                )
            await client.wait_for([p.name for p in layout], 120)
            before = varz(nats.monitor_url)
            procs = {c.name: c.pid for c in sup.children}
            procs["nats-server"] = nats.proc.pid if nats.proc is not None else 0
            cpu0 = {k: cpu_s(v) for k, v in procs.items()}
            t0 = time.perf_counter()
            outcome = await client.run(RunRequest("bench", spec, routing=routing))
            wall = time.perf_counter() - t0
            after = varz(nats.monitor_url)
            cpu = {k: cpu_s(v) - cpu0[k] for k, v in procs.items()}
            port = client.hellos["conductor"].http_port
            extra = {
                "client_wall_s": wall,
                "bus_msgs": float(after["in_msgs"] - before["in_msgs"]),
                "bus_deliveries": float(after["out_msgs"] - before["out_msgs"]),
                "bus_bytes": float(after["in_bytes"] - before["in_bytes"]),
                "window_latency_sum_s": metric(port, "twin_conductor_window_duration_seconds_sum"),
                "step_s": sum(
                    metric(client.hellos[p.name].http_port, "twin_host_step_duration_seconds_sum")
                    for p in layout
                    if p.role in ("generator", "balancer", "device")
                ),
                **{f"cpu_s:{k}": v for k, v in cpu.items()},
            }
        finally:
            await client.close()
            await bus.drain()
            sup.stop_all()
    return outcome, extra


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", default="w1")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--policy")
    ap.add_argument("--device-processes", type=int, default=1)
    ap.add_argument("--routing", choices=("relay", "direct"), default="relay", help="how envelopes travel")
    args = ap.parse_args()

    scenario = load_scenario(args.scenario, args.overrides, args.policy)
    t0 = time.perf_counter()
    local = run_scenario(scenario)
    local_wall = time.perf_counter() - t0

    spec = RunSpec("cluster", args.scenario, tuple(args.overrides), args.policy)
    with tempfile.TemporaryDirectory() as tmp:
        outcome, x = asyncio.run(over_nats(spec, args.device_processes, Path(tmp), args.routing))
    remote = ClusterFactory().result(spec, outcome, Codec())
    same = requests_csv(remote, scenario.slo) == requests_csv(local, scenario.slo)

    n = len(local.requests)
    windows = outcome.stats["windows"]
    loop_s = outcome.stats["windows_wall_s"]
    nats_wall = x["client_wall_s"]
    print(f"scenario {scenario.name}/{scenario.policy.name}: {n} requests, {windows:.0f} windows, "
          f"{outcome.stats['messages']:.0f} envelopes; requests.csv identical: {same}")  # fmt: skip
    print(f"in-process : {local_wall:8.2f} s wall  {n / local_wall:8.0f} requests/s")
    print(f"over NATS  : {nats_wall:8.2f} s wall  {n / nats_wall:8.0f} requests/s  "
          f"(set-up {outcome.stats['setup_wall_s']:.2f} s, windows {loop_s:.2f} s, "
          f"collect {outcome.stats['collect_wall_s']:.2f} s; {args.device_processes} device process(es), {args.routing} routing)")  # fmt: skip
    print(f"ratio      : {nats_wall / local_wall:8.2f} x slower over NATS")
    print(f"bus        : {x['bus_msgs']:.0f} messages published, {x['bus_deliveries']:.0f} delivered, "
          f"{x['bus_msgs'] / loop_s:,.0f} msgs/s published, {x['bus_bytes'] / 1e6:.1f} MB")  # fmt: skip
    print(f"per window : {1e6 * loop_s / windows:6.0f} us wall over NATS vs {1e6 * local_wall / windows:.0f} us "
          f"in-process (overhead {1e6 * (loop_s - local_wall) / windows:.0f} us); grant->done latency "
          f"{1e6 * x['window_latency_sum_s'] / windows:.0f} us, of which component steps "
          f"{1e6 * x['step_s'] / windows:.0f} us")  # fmt: skip
    cpu = ", ".join(f"{k[6:]} {v:.1f}" for k, v in x.items() if k.startswith("cpu_s:"))
    print(f"CPU seconds during the run: {cpu} (on {os.cpu_count()} cores)")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
