"""The fastest a message can go back and forth on this machine: the floor under `llmtwin up`.

    .venv/bin/python bench/bench_transport_floor.py              # processes where the OS puts them
    .venv/bin/python bench/bench_transport_floor.py --cpus 0     # every process on CPU 0

Prints the round-trip time, in microseconds, of

* a raw socket pair between two processes (blocking send and receive, no event loop): the
  cost of the operating system's wake-ups alone;
* the NATS protocol written by hand over blocking sockets between two processes, through an
  embedded nats-server: what the server adds to the wake-ups, without any Python client;
* nats-py over an embedded nats-server between two processes (uvloop, as the services run):
  one process publishes 200 bytes and waits for the other's answer, which is what one
  conductor round trip costs at the least (a grant out, a done back), before any work; then
  the same with the services' client (``services.nats_client.ServicesClient``), which writes
  each publish at once and parses arriving bytes where they arrive, with the messages still
  queued for their subscription's task (plain nats-py subscriptions), and then also handled at
  once (the services' subscriptions, ``subscribe_direct``).

With ``--observer-cpus``, a third nats-py process on those CPUs also receives every message of
the nats-py round trip (subscribed to both subjects): what it costs the pair that every message
also reaches the books of a process off their path, as in a window protocol without grants
(docs/architecture.md, "A window protocol without grants").

A run over NATS needs one such round trip per window the conductor opens (`rounds` in
summary.json), so rounds x this floor is a lower bound on its windows' wall time. A benchmark,
not a test; the figures are in docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg

from llmtwin.runtime.embedded_nats import EmbeddedNats
from llmtwin.runtime.processes import parse_cpus
from services.nats_client import DirectHandler, ServicesClient

PAYLOAD = b"x" * 200
T = TypeVar("T")


def socket_pair_us(n: int, cpus: frozenset[int] | None) -> float:
    """Round trip over a socket pair between this process and a forked echo, in us."""
    a, b = socket.socketpair()
    pid = os.fork()
    if pid == 0:  # the echo
        a.close()
        if cpus:
            os.sched_setaffinity(0, cpus)
        while data := b.recv(4096):
            b.sendall(data)
        os._exit(0)
    b.close()
    for _ in range(500):
        a.sendall(PAYLOAD)
        a.recv(4096)
    t0 = time.perf_counter()
    for _ in range(n):
        a.sendall(PAYLOAD)
        a.recv(4096)
    took = time.perf_counter() - t0
    a.close()
    os.waitpid(pid, 0)
    return 1e6 * took / n


def _raw_connect(url: str, subject: bytes) -> socket.socket:
    """A blocking NATS connection subscribed to ``subject`` (the text protocol by hand)."""
    host, port = url.removeprefix("nats://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.recv(4096)  # INFO
    sock.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\nSUB ' + subject + b" 1\r\nPING\r\n")
    got = b""
    while b"PONG" not in got:
        got += sock.recv(4096)
    return sock


def _raw_message(sock: socket.socket) -> bytes:
    """The payload of the next MSG (nothing else arrives on these connections)."""
    got = b""
    while (eol := got.find(b"\r\n")) < 0:
        got += sock.recv(65536)
    size = int(got[:eol].split()[-1])
    while len(got) < eol + 2 + size + 2:
        got += sock.recv(65536)
    return got[eol + 2 : eol + 2 + size]


def raw_nats_us(n: int, cpus: frozenset[int] | None) -> float:
    """Round trip through an embedded nats-server between this process and a forked echo, both
    speaking the protocol over blocking sockets, in us."""
    with EmbeddedNats(cpus=cpus) as server:
        pid = os.fork()
        if pid == 0:  # the echo
            echo = _raw_connect(server.url, b"floor.ping")
            while data := _raw_message(echo):
                echo.sendall(b"PUB floor.pong %d\r\n" % len(data) + data + b"\r\n")
            os._exit(0)
        try:
            sock = _raw_connect(server.url, b"floor.pong")
            ping = b"PUB floor.ping %d\r\n" % len(PAYLOAD) + PAYLOAD + b"\r\n"
            time.sleep(0.2)  # the echo's subscription
            for _ in range(500):
                sock.sendall(ping)
                _raw_message(sock)
            t0 = time.perf_counter()
            for _ in range(n):
                sock.sendall(ping)
                _raw_message(sock)
            took = time.perf_counter() - t0
            sock.close()
        finally:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    return 1e6 * took / n


CLIENTS = ("nats-py", "queued", "direct")
"""nats-py's client; the services' with plain subscriptions; the services' with its own."""


async def _client(url: str, client: str) -> Client:
    if client == "nats-py":
        return await nats.connect(url)
    nc = ServicesClient()
    await nc.connect(servers=[url])
    return nc


async def _subscribe(nc: Client, client: str, subject: str, cb: Callable[[Msg], Awaitable[None]]) -> None:
    if isinstance(nc, ServicesClient) and client == "direct":
        await nc.subscribe_direct(subject, "", DirectHandler(cb))  # type: ignore[arg-type]
    else:
        await nc.subscribe(subject, cb=cb)


async def _echo(url: str, client: str) -> None:
    nc = await _client(url, client)

    async def answer(msg: Msg) -> None:
        await nc.publish("floor.pong", msg.data)

    await _subscribe(nc, client, "floor.ping", answer)
    await asyncio.Event().wait()


async def _observe(url: str) -> None:
    nc = await nats.connect(url)
    seen = 0

    async def took(msg: Msg) -> None:
        nonlocal seen
        seen += 1

    await nc.subscribe("floor.ping", cb=took)
    await nc.subscribe("floor.pong", cb=took)
    await asyncio.Event().wait()


async def _ping(url: str, n: int, client: str) -> float:
    nc = await _client(url, client)
    answers: asyncio.Queue[None] = asyncio.Queue()

    async def got(msg: Msg) -> None:
        answers.put_nowait(None)

    await _subscribe(nc, client, "floor.pong", got)
    await nc.flush()
    for _ in range(500):  # warm up (and wait for the echo's subscription)
        await nc.publish("floor.ping", PAYLOAD)
        try:
            await asyncio.wait_for(answers.get(), 0.5)
        except TimeoutError:
            continue
    t0 = time.perf_counter()
    for _ in range(n):
        await nc.publish("floor.ping", PAYLOAD)
        await answers.get()
    took = time.perf_counter() - t0
    await nc.close()
    return 1e6 * took / n


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """On uvloop where it is installed, as the services run."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def _start(role: str, url: str, cpus: frozenset[int] | None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, __file__, role, f"--url={url}"],
        preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
    )


def nats_us(
    n: int, cpus: frozenset[int] | None, observer: frozenset[int] | None = None, client: str = "nats-py"
) -> float:
    """Round trip between this process and an echo process through an embedded nats-server
    (``observer``: with a third process on those CPUs receiving every message; ``client``: both
    with that client, one of CLIENTS)."""
    with EmbeddedNats(cpus=cpus) as server:
        procs = [_start(f"--echo={client}", server.url, cpus)]
        if observer is not None:
            procs.append(_start("--observe", server.url, observer))
        try:
            return run_loop(_ping(server.url, n, client))
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpus", default="all", help="CPUs of every process, e.g. 0 (default: all)")
    ap.add_argument("-n", type=int, default=20_000, help="round trips per measurement")
    ap.add_argument(
        "--observer-cpus", metavar="CPUS",
        help="also time the nats-py round trip with a third process on these CPUs receiving every message",
    )  # fmt: skip
    ap.add_argument("--echo", choices=CLIENTS, help=argparse.SUPPRESS)
    ap.add_argument("--observe", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.echo:
        run_loop(_echo(args.url, args.echo))
        return 0
    if args.observe:
        run_loop(_observe(args.url))
        return 0
    cpus = parse_cpus(args.cpus)
    observer = parse_cpus(args.observer_cpus) if args.observer_cpus else None  # before pinning this one
    if cpus:
        os.sched_setaffinity(0, cpus)
    print(f"{os.cpu_count()} CPUs, processes on {args.cpus}; load average {os.getloadavg()[0]:.2f}")
    print(f"socket pair round trip : {socket_pair_us(args.n, cpus):7.1f} us")
    print(
        f"raw NATS round trip    : {raw_nats_us(args.n, cpus):7.1f} us  (via nats-server, no Python client)"
    )
    print(f"nats-py round trip     : {nats_us(args.n, cpus):7.1f} us  (via nats-server, 200-byte messages)")
    print(
        f"  ... services' client : {nats_us(args.n, cpus, client='queued'):7.1f} us  "
        "(publishes written, bytes parsed at once; messages queued for their subscription's task)"
    )
    print(
        f"  ... handled at once  : {nats_us(args.n, cpus, client='direct'):7.1f} us  "
        "(the services' subscriptions: services.nats_client.ServicesClient.subscribe_direct)"
    )
    if args.observer_cpus:
        print(
            f"  ... with an observer : {nats_us(args.n, cpus, observer):7.1f} us  "
            f"(a third process on CPUs {args.observer_cpus} receiving every message)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
