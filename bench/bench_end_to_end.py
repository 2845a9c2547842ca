"""End-to-end speed and memory of `llmtwin simulate` (and `llmtwin up`): a benchmark, not a test.

Each case runs the real command line in a fresh process, writing every output file and plot, as
a user would. The process's wall time is split into:

* **start-up**: process start (interpreter included) to the first simulation window;
* **simulation**: the simulation loop, logs handed to the assembler as it goes included;
* **reporting**: the last window to exit (the remaining assembly, summary, table, CSV and JSON
  files, plots: the plot worker renders them while the rest is written).

``cpu s`` is the main process's CPU time (user + system): on a shared machine it is the steadier
figure, and on an idle one the wall time of the main process comes close to it (the plot worker
runs on the other core).

Cases:

* ``w1``: scenarios/w1.toml (Llama-2-7B, 4 x H100 TP1, colocated, Poisson 20 req/s, Azure
  conversation lengths), 10,000 requests. Target <= 2.4 s (Vidur: 23.9 s on this machine).
* ``w1-50k``: the same at 50,000 requests.
* ``big-100k``, ``big-1m``: 128 instances x TP8 (1,024 H100s) of Llama-3-70B at 640 req/s, the
  load w1 puts on its cluster (about 46% of the physics-only saturation that ``llmtwin
  trace-stats`` estimates, like w1's 20 of 43 req/s); 100,000 and 1,000,000 requests. Targets:
  100k <= 15 s; 1M <= 120 s and <= 2 GB peak RSS.
* ``up-w1``: ``llmtwin up w1`` (the services over an embedded NATS server, ``--speed max``), for
  comparison with ``w1``; its "sim s" is the windows' wall time (``windows_wall_s`` of
  summary.json's ``run``), its ``cpu s`` that of every process (``up``, the services it forks,
  nats-server, the plot worker), and its peak RSS the largest process's.
* ``cli``: ``llmtwin --version``, ``--help`` and ``list``, each a fresh process (median of 5).
  Target: each under 0.3 s.

Usage::

    .venv/bin/python bench/bench_end_to_end.py                 # every case but big-1m, once
    .venv/bin/python bench/bench_end_to_end.py w1 up-w1 -n 5   # some cases, best and median of 5

Peak RSS is the main process's (``ru_maxrss``) and, separately, the largest child's (the plot
worker, or for ``up`` the largest service). The load average is printed before each case: on a
shared machine, compare only figures taken at similar load.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIG = [
    "--set", "model=llama-3-70b", "--set", "cluster.tp=8", "--set", "cluster.instances=128",
    "--set", "workload.rate_rps=640",
]  # fmt: skip

CASES: dict[str, tuple[str, list[str], int]] = {
    "cli": ("", [], 0),
    "w1": ("simulate", ["w1"], 10_000),
    "w1-50k": ("simulate", ["w1", "--set", "workload.requests=50000"], 50_000),
    "big-100k": ("simulate", ["w1", *BIG, "--set", "workload.requests=100000"], 100_000),
    "big-1m": ("simulate", ["w1", *BIG, "--set", "workload.requests=1000000"], 1_000_000),
    "up-w1": ("up", ["w1"], 10_000),
}
"""name -> (command, arguments, requests)."""

DEFAULT = ["cli", "w1", "w1-50k", "big-100k", "up-w1"]

CLI = (["--version"], ["--help"], ["list"])


def cli_times(repeat: int = 5) -> dict[str, float]:
    """Median wall seconds of a few quick commands, each in a fresh process."""
    exe = [sys.executable, "-m", "llmtwin.cli.main"]
    out = {}
    for args in CLI:
        runs = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            subprocess.run([*exe, *args], check=True, capture_output=True)
            runs.append(time.perf_counter() - t0)
        out[" ".join(args)] = statistics.median(runs)
    return out


def process_age_s() -> float:
    """Seconds since this process started (Linux: /proc), interpreter start-up included."""
    ticks = os.sysconf("SC_CLK_TCK")
    start = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19]) / ticks
    return float(Path("/proc/uptime").read_text().split()[0]) - start


def child(command: str, args: list[str], out: Path) -> dict[str, float]:
    """Run the command line in this (fresh) process; time its phases."""
    marks: dict[str, float] = {}
    if command == "simulate":
        from llmtwin.sim import local

        run = local.LocalRunner.run

        def timed(self: local.LocalRunner, *a: object, **k: object) -> float:
            marks["startup_s"] = process_age_s()
            t0 = time.perf_counter()
            end = run(self, *a, **k)  # type: ignore[arg-type]
            marks["simulation_s"] = time.perf_counter() - t0
            marks["after_simulation_s"] = process_age_s()
            return end

        local.LocalRunner.run = timed  # type: ignore[method-assign]
    from llmtwin.cli.main import main

    code = main([command, *args, "--quiet", "--out", str(out)])
    if code != 0:
        raise SystemExit(code)
    total = process_age_s()
    marks["total_s"] = total
    if "after_simulation_s" in marks:
        marks["reporting_s"] = total - marks.pop("after_simulation_s")
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # every child has exited and been reaped
    marks["cpu_s"] = me.ru_utime + me.ru_stime
    if command == "up":
        marks["simulation_s"] = json.loads((out / "summary.json").read_text())["run"]["windows_wall_s"]
        marks["cpu_s"] += kids.ru_utime + kids.ru_stime
    marks["peak_rss_mb"] = me.ru_maxrss / 1024.0
    marks["child_peak_rss_mb"] = kids.ru_maxrss / 1024.0
    return marks


def measure(name: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            [sys.executable, __file__, "--child", name, tmp], check=True, capture_output=True, text=True
        )
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def cell(run: dict[str, float], key: str, width: int) -> str:
    return f"{run[key]:>{width}.2f}" if key in run else f"{'-':>{width}}"


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        command, args, _ = CASES[argv[1]]
        print(json.dumps(child(command, args, Path(argv[2]) / "out")))
        return 0
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("cases", nargs="*", default=DEFAULT, help=f"some of {', '.join(CASES)}")
    p.add_argument("-n", "--repeat", type=int, default=1, help="runs per case (best and median shown)")
    a = p.parse_args(argv)
    unknown = [c for c in a.cases if c not in CASES]
    if unknown:
        p.error(f"unknown case(s) {', '.join(unknown)}")
    print(f"{os.cpu_count()} CPUs; python {sys.version.split()[0]}")
    print(
        f"{'case':10} {'load':>5} {'start-up s':>10} {'sim s':>8} {'report s':>9} {'total s':>8} "
        f"{'(median)':>8} {'cpu s':>7} {'req/s':>8} {'RSS MB':>7} {'child MB':>8}"
    )
    for name in a.cases:
        load = os.getloadavg()[0]
        if name == "cli":
            times = ", ".join(f"llmtwin {k}: {v:.3f} s" for k, v in cli_times().items())
            print(f"{'cli':10} {load:>5.2f} {times}", flush=True)
            continue
        runs = [measure(name) for _ in range(a.repeat)]
        best = min(runs, key=lambda r: r["total_s"])
        median = statistics.median(r["total_s"] for r in runs)

        print(
            f"{name:10} {load:>5.2f} {cell(best, 'startup_s', 10)} {cell(best, 'simulation_s', 8)} "
            f"{cell(best, 'reporting_s', 9)} {best['total_s']:>8.2f} {median:>8.2f} {best['cpu_s']:>7.2f} "
            f"{CASES[name][2] / best['total_s']:>8.0f} {best['peak_rss_mb']:>7.0f} "
            f"{best['child_peak_rss_mb']:>8.0f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
