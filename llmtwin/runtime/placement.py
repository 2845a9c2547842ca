"""Where ``llmtwin up`` runs nats-server and the services: on one CPU where hand-offs are faster there.

Every window of a run is a chain of hand-offs between processes, one after the other
(conductor -> nats-server -> host -> nats-server -> conductor). Where waking a process on
another CPU is slow, the chain runs faster with every process on one CPU. On a virtual machine
an idle virtual CPU halts, and a wake-up sent to it goes through the hypervisor: on this
project's 2-core VM a socket-pair round trip takes about 36 us between two CPUs and 9 us on
one (``bench/bench_transport_floor.py``), and ``llmtwin up w1`` takes about 14% less time with
every service on one CPU (docs/performance.md).

With ``--cpus auto`` (the default) ``up`` measures that difference before it starts anything
and then starts nats-server and every service on one CPU if a round trip there is at least
:data:`FASTER` times as fast. Before, not after: nats-server's Go runtime sizes its scheduler to
the CPUs it may use when it starts, and the services, forked from ``up``, import nothing while
they start, so nothing is gained by letting them start on every CPU. It leaves placement to the
OS on a single CPU, without Linux's ``sched_setaffinity``, or with several device processes
(which are asked for so that their windows run in parallel). Services started again after a
crash start on the same CPU.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

FASTER = 2.0
"""How many times faster a round trip on one CPU must be than between two for ``auto`` to compact."""

_ECHO = "import socket,sys\ns=socket.socket(fileno=int(sys.argv[1]))\nwhile d:=s.recv(64):s.send(d)\n"
"""The probe's partner: echoes every byte back until the socket closes (no imports beyond the
standard library's socket, so it starts in milliseconds)."""


@dataclass(frozen=True, slots=True)
class HandoffProbe:
    """Round trip of a one-byte message between two processes, microseconds."""

    same_cpu_us: float
    cross_cpu_us: float


@dataclass(frozen=True, slots=True)
class Placement:
    """What ``auto`` chose: the CPUs for nats-server and every service (None: the OS decides), and why."""

    cpus: frozenset[int] | None
    why: str


def probe_handoff(cpu: int, other: int, rounds: int = 300) -> HandoffProbe:
    """Ping-pong between the calling thread, held on ``cpu``, and an echo process, first on
    ``other`` then on ``cpu`` (best of three batches of ``rounds`` each way). Pins only the
    calling thread (Linux affinity is per thread), and puts it back."""
    mine, theirs = socket.socketpair()
    child = subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", _ECHO, str(theirs.fileno())],
        pass_fds=[theirs.fileno()],
        stdin=subprocess.DEVNULL,
    )
    theirs.close()
    old = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {cpu})
        cross = _round_trip_us(mine, child.pid, other, rounds)
        same = _round_trip_us(mine, child.pid, cpu, rounds)
    finally:
        os.sched_setaffinity(0, old)
        mine.close()
        child.wait(5.0)
    return HandoffProbe(same, cross)


def _round_trip_us(sock: socket.socket, pid: int, cpu: int, rounds: int) -> float:
    os.sched_setaffinity(pid, {cpu})
    for _ in range(rounds // 4):  # warm-up: the partner has started and moved
        sock.send(b"x")
        sock.recv(64)
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(rounds):
            sock.send(b"x")
            sock.recv(64)
        best = min(best, (time.perf_counter() - t0) / rounds * 1e6)
    return best


class AutoPlacement:
    """``--cpus auto``: decides before anything starts (the probe is passed in, for tests)."""

    def __init__(
        self,
        probe: Callable[[int, int], HandoffProbe] = probe_handoff,
        allowed: Iterable[int] | None = None,
    ) -> None:
        self.probe = probe
        self.allowed = sorted(allowed) if allowed is not None else _allowed_cpus()

    def decide(self, device_processes: int) -> Placement:
        if len(self.allowed) < 2:
            return Placement(None, "this process may use one CPU only")
        if device_processes > 1:
            return Placement(None, f"{device_processes} device processes run their windows in parallel")
        cpu, other = self.allowed[-1], self.allowed[-2]  # the last: CPU 0 takes more interrupts
        p = self.probe(cpu, other)
        figures = f"a hand-off takes {p.same_cpu_us:.0f} us on one CPU, {p.cross_cpu_us:.0f} us between two"
        if p.same_cpu_us * FASTER <= p.cross_cpu_us:
            return Placement(frozenset({cpu}), figures)
        return Placement(None, figures)


def _allowed_cpus() -> list[int]:
    if not hasattr(os, "sched_getaffinity"):
        return []  # not Linux: nothing to decide
    return sorted(os.sched_getaffinity(0))
