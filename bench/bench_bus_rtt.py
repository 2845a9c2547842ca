"""What one hop costs on this machine: the bus round trip, and waking a process on another CPU.

    .venv/bin/python bench/bench_bus_rtt.py             # services' placement: wherever the OS puts them
    .venv/bin/python bench/bench_bus_rtt.py --cpus 0    # everything on CPU 0
    .venv/bin/python bench/bench_bus_rtt.py --asyncio   # asyncio's event loop instead of uvloop
    .venv/bin/python bench/bench_bus_rtt.py --nats-py   # the same with nats-py (when installed)

1. Ping-pong between two processes through an embedded nats-server with the services' client
   (``services/natsbus.py``, on uvloop when installed): microseconds per round trip. A twin
   window is one such round trip (grant out, done back) plus the work on both ends.
2. The cost of a loopback TCP send that wakes a reader sleeping in ``recv``: system CPU
   microseconds per send, reader on the other CPU vs on the same one (Linux, 2+ CPUs). On a
   virtual machine whose idle CPUs halt, waking another CPU is what makes a window expensive.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import socket
import subprocess
import sys
import time

from llmtwin.runtime.natsd import EmbeddedNats
from llmtwin.runtime.processes import parse_cpus, preexec
from services.bus import connect
from services.main import run_loop
from services.natsbus import NatsMsg

try:  # for comparison only: the services used nats-py until they got their own client
    import nats
except ImportError:
    nats = None

ROUNDS = 5000


async def pong(url: str) -> int:
    bus = await connect(url, "pong")
    await bus.subscribe("rtt.ping", lambda m: bus.publish_nowait("rtt.pong", m.data))
    await bus.flush()
    print("ready", flush=True)
    await asyncio.sleep(3600)
    return 0


async def ping(url: str) -> int:
    bus = await connect(url, "ping")
    done = asyncio.get_running_loop().create_future()
    count = 0

    def back(msg: NatsMsg) -> None:
        nonlocal count
        count += 1
        if count == ROUNDS:
            done.set_result(None)
        else:
            bus.publish_nowait("rtt.ping", msg.data)

    await bus.subscribe("rtt.pong", back)
    await bus.flush()
    t0 = time.perf_counter()
    bus.publish_nowait("rtt.ping", b"x" * 200)
    await done
    print(f"bus round trip (ping -> nats-server -> pong -> nats-server -> ping, {type(asyncio.get_running_loop()).__module__}): "
          f"{1e6 * (time.perf_counter() - t0) / ROUNDS:.0f} us")  # fmt: skip
    await bus.drain()
    return 0


async def pong_natspy(url: str) -> int:
    nc = await nats.connect(url)

    async def back(msg: object) -> None:
        await nc.publish("rtt.pong", msg.data)  # type: ignore[attr-defined]

    await nc.subscribe("rtt.ping", cb=back)
    await nc.flush()
    print("ready", flush=True)
    await asyncio.sleep(3600)
    return 0


async def ping_natspy(url: str) -> int:
    nc = await nats.connect(url)
    done = asyncio.get_running_loop().create_future()
    count = 0

    async def back(msg: object) -> None:
        nonlocal count
        count += 1
        if count == ROUNDS:
            done.set_result(None)
        else:
            await nc.publish("rtt.ping", msg.data)  # type: ignore[attr-defined]

    await nc.subscribe("rtt.pong", cb=back)
    await nc.flush()
    t0 = time.perf_counter()
    await nc.publish("rtt.ping", b"x" * 200)
    await done
    print(f"nats-py round trip ({type(asyncio.get_running_loop()).__module__}): "
          f"{1e6 * (time.perf_counter() - t0) / ROUNDS:.0f} us")  # fmt: skip
    await nc.drain()
    return 0


def round_trip(cpus: frozenset[int] | None, loop: list[str]) -> None:
    with EmbeddedNats(cpus=cpus) as nats:
        me = [sys.executable, __file__, *loop]
        with subprocess.Popen([*me, "--role", "pong", nats.url], stdout=subprocess.PIPE, text=True,
                              preexec_fn=preexec(cpus)) as other:  # fmt: skip
            try:
                assert other.stdout is not None
                other.stdout.readline()  # ready
                subprocess.run([*me, "--role", "ping", nats.url], check=True, preexec_fn=preexec(cpus))
            finally:
                other.kill()


def wake_cost(reader_cpu: int, writer_cpu: int, sends: int = 20000) -> float:
    """System CPU us per send that wakes a reader blocked in recv (paced so it sleeps each time)."""
    server = socket.create_server(("127.0.0.1", 0))
    pid = os.fork()
    if pid == 0:  # the reader
        os.sched_setaffinity(0, {reader_cpu})
        conn, _ = server.accept()
        while conn.recv(65536):
            pass
        os._exit(0)
    os.sched_setaffinity(0, {writer_cpu})
    s = socket.create_connection(server.getsockname())
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_stime
    for _ in range(sends):
        s.send(b"x" * 150)
        pause = time.perf_counter() + 100e-6
        while time.perf_counter() < pause:  # long enough for the reader to go back to sleep
            pass
    cost = 1e6 * (resource.getrusage(resource.RUSAGE_SELF).ru_stime - before) / sends
    s.close()
    os.waitpid(pid, 0)
    server.close()
    return cost


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpus", default="all", help="CPUs of nats-server and both processes, or all")
    ap.add_argument("--asyncio", action="store_true", help="asyncio's event loop, not uvloop")
    ap.add_argument(
        "--nats-py", action="store_true", help="the round trip with nats-py (pip install nats-py)"
    )
    ap.add_argument("--role", choices=("ping", "pong"), help=argparse.SUPPRESS)
    ap.add_argument("url", nargs="?", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.role:
        roles = {"ping": ping_natspy, "pong": pong_natspy} if args.nats_py else {"ping": ping, "pong": pong}
        return run_loop(roles[args.role](args.url), fast=not args.asyncio)
    if args.nats_py and nats is None:
        print("nats-py is not installed (uv pip install nats-py)", file=sys.stderr)
        return 2
    print(f"load average {os.getloadavg()[0]:.2f}, CPUs {args.cpus}")
    flags = ["--asyncio"] * args.asyncio + ["--nats-py"] * args.nats_py
    round_trip(parse_cpus(args.cpus), flags)
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) >= 2:
        a, b = cpus[0], cpus[1]
        print(f"loopback send waking a sleeping reader: {wake_cost(b, a):.1f} us system CPU with the "
              f"reader on another CPU, {wake_cost(a, a):.1f} us on the same CPU")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
