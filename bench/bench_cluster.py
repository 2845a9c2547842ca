"""Speed and memory of the cluster twin (a benchmark that prints figures; not a test).

Cases (each runs in a fresh process, so its peak RSS is its own):

* ``w1``: the issue's benchmark, ``scenarios/w1.toml``: Llama-2-7B on 4 x H100-SXM (TP1),
  colocated, Poisson 20 req/s, Azure conversation lengths, 10,000 requests. Vidur needs about
  24 s of wall time (about 420 simulated requests per second); the target is >= 4,000.
* ``big``: 100,000 requests on 128 instances x TP8 (1,024 H100s) of Llama-3-70B, the w1
  workload scaled to the same load (640 req/s, about 46% of the physics-only saturation that
  ``llmtwin trace-stats`` estimates, like w1's 20 of 43 req/s). Target: <= 60 s, <= 2 GB.
* ``w1-disaggregated`` and ``w1-accellm``: w1 under the other two policies (no target; they
  exchange more messages per request).

Usage::

    .venv/bin/python bench/bench_cluster.py            # every case
    .venv/bin/python bench/bench_cluster.py w1 big     # some

Wall time includes generating the requests, the run and assembling the records (not the
command line's start-up, summary and output files: ``bench/bench_end_to_end.py`` measures those). ``events`` are
the kernel's messages plus the engines' committed iteration segments (each segment is one
fast-forwarded run of identical iterations; ``iterations`` counts those). CPU seconds are
printed too: on a shared machine they are the steadier figure.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

from llmtwin.cluster.run import run_scenario
from llmtwin.scenario.loader import load_scenario
from llmtwin.scenario.spec import Scenario

BIG = [
    "model=llama-3-70b",
    "cluster.tp=8",
    "cluster.instances=128",
    "workload.requests=100000",
    "workload.rate_rps=640",
]

CASES: dict[str, tuple[list[str], str | None]] = {
    "w1": ([], None),
    "big": (BIG, None),
    "w1-disaggregated": ([], "disaggregated"),
    "w1-accellm": ([], "accellm"),
}


def measure(name: str) -> dict[str, float | str]:
    """Run one case in this process and return its figures."""
    overrides, policy = CASES[name]
    scenario: Scenario = load_scenario("w1", overrides, policy=policy)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    result = run_scenario(scenario, detail=False)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    n = len(result.table)
    done = int(result.table.completed.sum())
    stats = result.stats
    return {
        "case": name,
        "policy": result.policy,
        "requests": n,
        "completed": done,
        "wall_s": wall,
        "cpu_s": cpu,
        "requests_per_s": n / wall,
        "requests_per_cpu_s": n / cpu,
        "events": stats["events"],
        "events_per_s": stats["events"] / wall,
        "messages": stats["messages"],
        "windows": stats["windows"],
        "iterations": stats["iterations"],
        "cost_evaluations": stats["cost_evaluations"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "virtual_s": result.end_s,
    }


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--case":
        print(json.dumps(measure(argv[1])))
        return 0
    names = argv or list(CASES)
    unknown = [n for n in names if n not in CASES]
    if unknown:
        print(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(CASES)}", file=sys.stderr)
        return 2
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    header = f"{'case':18} {'requests':>9} {'wall s':>8} {'cpu s':>8} {'req/s':>8} {'req/cpu-s':>10} {'events/s':>10} {'peak RSS MB':>12}"
    print(header)
    for name in names:
        out = subprocess.run(
            [sys.executable, __file__, "--case", name], check=True, capture_output=True, text=True
        ).stdout
        f = json.loads(out.strip().splitlines()[-1])
        print(
            f"{f['case']:18} {f['requests']:>9} {f['wall_s']:>8.2f} {f['cpu_s']:>8.2f} "
            f"{f['requests_per_s']:>8.0f} {f['requests_per_cpu_s']:>10.0f} {f['events_per_s']:>10.0f} "
            f"{f['peak_rss_mb']:>12.0f}"
        )
        if f["completed"] != f["requests"]:
            print(f"  warning: {f['requests'] - f['completed']} requests did not complete")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
