"""Soak: a long paced run over the services, watching memory and the lag behind real time.

    .venv/bin/python bench/bench_soak.py                      # live scenario, 30 minutes at --speed 1
    .venv/bin/python bench/bench_soak.py --minutes 3          # a shorter soak
    .venv/bin/python bench/bench_soak.py --scenario demo --set workload.requests=3000 --speed 0.5

Starts what ``llmtwin up`` starts (a private, authenticated nats-server and every service as its
own process; each from a fresh interpreter, as compose starts them, where ``up`` forks them from
itself: a forked process's resident memory counts the pages it shares with ``up``, which would
blur its own growth), runs the scenario with its arrivals cut to ``--minutes`` of virtual time
(``workload.duration_s``) at ``--speed`` (1 = real time), and records:

* the resident memory (VmRSS) of every process every ``--sample-s`` wall seconds; growth is
  the last sample over the first one taken after the warm-up (the first ``--warmup`` fraction of
  the run: set-up, caches filling), per process;
* the lag behind the pace at each progress message (``Progress.lag_s``, about 4 a second): its
  p50, p99 and maximum.

Targets (issue 9): memory growth under 10 % per process, lag p99 under 100 ms. Prints a table
and PASS/FAIL per target; exit code 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from llmtwin.runtime.layout import CONDUCTOR, cluster_layout
from llmtwin.runtime.private_bus import PrivateBus
from llmtwin.runtime.processes import Supervisor
from llmtwin.scenario.loader import load_scenario
from proto.control import Progress, RunRequest, RunSpec
from services.client import RunClient
from services.cluster import ClusterFactory
from services.nats_bus import connect

MEMORY_GROWTH_TARGET = 0.10
LAG_P99_TARGET_S = 0.100


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (Linux /proc; 0 when gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def soak(args: argparse.Namespace) -> int:
    overrides = [*args.set, f"workload.duration_s={args.minutes * 60:g}"]
    scenario = load_scenario(args.scenario, overrides)
    spec = RunSpec("cluster", args.scenario, tuple(overrides), None)
    layout = cluster_layout(args.device_processes, ClusterFactory().needs_planner(spec))
    with tempfile.TemporaryDirectory(prefix="llmtwin-soak-") as tmp:
        private = PrivateBus(Path(tmp), {p.name: p.role for p in layout})
        sup = Supervisor(Path(tmp) / "logs")
        try:
            url = private.start()
            for proc in layout:
                sup.spawn(proc.name, proc.argv(url, http_port=-1), private.child_env(proc.name))
            bus = await connect(private.options())
            client = RunClient(bus, name="soak", conductor=CONDUCTOR)
            await client.start()
            await client.wait_for([p.name for p in layout], 120)
            pids = {c.name: c.pid for c in sup.children}
            assert private.server.proc is not None
            pids["nats-server"] = private.server.proc.pid
            lags: list[float] = []
            samples: list[tuple[float, dict[str, int]]] = []
            progress: list[Progress] = []

            def on_progress(p: Progress) -> None:
                progress.append(p)
                if not p.paused and p.window > 0:
                    lags.append(p.lag_s)

            async def sample() -> None:
                while True:
                    samples.append((time.monotonic(), {n: rss_bytes(pid) for n, pid in pids.items()}))
                    await asyncio.sleep(args.sample_s)

            sampler = asyncio.ensure_future(sample())
            t0 = time.monotonic()
            print(
                f"soak: {scenario.name} ({args.minutes:g} min of arrivals) at --speed {args.speed:g}, "
                f"{len(layout)} services; load average {os.getloadavg()[0]:.2f}",
                flush=True,
            )
            try:
                outcome = await client.run(RunRequest("soak", spec, args.speed), on_progress)
            finally:
                sampler.cancel()
                await client.close()
                await bus.close()
            wall = time.monotonic() - t0
        finally:
            sup.stop_all(10.0)
            private.server.stop()
    run_end = samples[-1][0]
    warm = t0 + args.warmup * (run_end - t0)
    after = [s for s in samples if s[0] >= warm]
    first, last = (after[0][1], after[-1][1]) if len(after) >= 2 else (samples[0][1], samples[-1][1])
    print(
        f"\nrun: {outcome.end_s:.0f} s virtual in {wall:.0f} s wall, {outcome.stats['windows']:.0f} windows"
    )
    print(f"{'process':<12}{'RSS after warm-up (MB)':>24}{'RSS at end (MB)':>18}{'growth':>9}")
    worst = 0.0
    for name in sorted(first):
        a, b = first[name], last[name]
        growth = (b - a) / a if a else 0.0
        worst = max(worst, growth)
        print(f"{name:<12}{a / 1e6:>24.1f}{b / 1e6:>18.1f}{growth:>8.1%}")
    p50, p99 = percentile(lags, 0.50), percentile(lags, 0.99)
    print(
        f"\nlag behind the pace over {len(lags)} progress messages: p50 {p50 * 1e3:.1f} ms, "
        f"p99 {p99 * 1e3:.1f} ms, max {max(lags, default=0) * 1e3:.1f} ms, "
        f"mean {statistics.fmean(lags) * 1e3 if lags else 0:.1f} ms"
    )
    memory_ok = worst < MEMORY_GROWTH_TARGET
    lag_ok = p99 < LAG_P99_TARGET_S
    print(
        f"memory growth < {MEMORY_GROWTH_TARGET:.0%} per process: {'PASS' if memory_ok else 'FAIL'} (worst {worst:.1%})"
    )
    print(f"lag p99 < {LAG_P99_TARGET_S * 1e3:.0f} ms: {'PASS' if lag_ok else 'FAIL'}")
    return 0 if memory_ok and lag_ok else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", default="live")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--minutes", type=float, default=30.0, help="virtual minutes of arrivals")
    p.add_argument("--speed", type=float, default=1.0, help="virtual seconds per wall second")
    p.add_argument("--device-processes", type=int, default=2)
    p.add_argument("--sample-s", type=float, default=5.0, help="wall seconds between memory samples")
    p.add_argument("--warmup", type=float, default=0.2, help="fraction of the run before the memory baseline")
    return asyncio.run(soak(p.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
