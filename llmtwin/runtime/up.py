"""``llmtwin up``'s engine: an embedded nats-server, every service as its own process, runs, cleanup.

:class:`Launcher` starts ``.venv/bin/nats-server`` on a free loopback port and one
``python -m services ROLE`` process per service, waits until each has said hello, runs the
runs one after the other through the conductor (showing live progress), and stops everything:
SIGTERM to every child, a grace period, SIGKILL for stragglers, the server last, temporary
files removed. The same cleanup runs on Ctrl-C, on SIGTERM, and when a child exits early (then
the error names it and shows the end of its log).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import shutil
import signal
import sys
import tempfile
from collections.abc import Awaitable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO, TypeVar

from llmtwin.errors import ServiceFailure
from llmtwin.runtime.embedded_nats import EmbeddedNats
from llmtwin.runtime.processes import Supervisor
from llmtwin.runtime.progress_line import ProgressLine
from proto.control import RunOutcome, RunRequest, RunSpec
from services.bus import NatsOptions, connect
from services.client import RunClient

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ServiceProc:
    """One service process to start: ``python -m services ROLE --name NAME FLAGS``."""

    name: str
    role: str
    flags: tuple[str, ...] = ()


def cluster_layout(device_processes: int, planner: bool) -> list[ServiceProc]:
    """The twin's services: conductor, generator, balancer, devices (sharded), planner."""
    procs = [ServiceProc("conductor", "conductor"), ServiceProc("generator", "generator")]
    procs.append(ServiceProc("balancer", "balancer"))
    n = device_processes
    procs += [ServiceProc(f"device-{k}", "device", ("--shard", f"{k}/{n}")) for k in range(1, n + 1)]
    if planner:
        procs.append(ServiceProc("planner", "planner"))
    return procs


@dataclass(frozen=True, slots=True)
class UpRun:
    """One run to do: its label (progress, run id), spec and request count (progress)."""

    label: str
    spec: RunSpec
    total_requests: int | None = None


def run_id(label: str, index: int) -> str:
    """A subject-safe run id, unique per ``up`` process."""
    return f"{re.sub(r'[^A-Za-z0-9_-]+', '-', label).strip('-')}-{os.getpid()}-{index}"


class Launcher:
    """Runs runs on a private set of service processes; see the module docstring."""

    def __init__(
        self,
        layout: Sequence[ServiceProc],
        *,
        speed: float = math.inf,
        stream: TextIO = sys.stderr,
        quiet: bool = False,
        log_dir: Path | None = None,
        start_timeout_s: float = 120.0,
        grace_s: float = 10.0,
        cpus: frozenset[int] | None = None,
    ) -> None:
        self.layout = list(layout)
        self.cpus = cpus
        """CPUs for nats-server and every service (None: wherever the OS puts them)."""
        self.speed = speed
        self.stream, self.quiet = stream, quiet
        self.log_dir = log_dir
        self.start_timeout_s = start_timeout_s
        self.grace_s = grace_s
        self.supervisor: Supervisor | None = None
        self.nats: EmbeddedNats | None = None

    def run(self, runs: Sequence[UpRun]) -> list[RunOutcome]:
        """Start everything, do ``runs`` in order, stop everything (also on errors and signals)."""
        tmp = Path(tempfile.mkdtemp(prefix="llmtwin-up-"))
        self.nats = EmbeddedNats(tmp / "nats", cpus=self.cpus)
        self.supervisor = Supervisor(self.log_dir or tmp / "logs", cpus=self.cpus)
        # SIGTERM outside the event loop (starting the server, spawning) must clean up too.
        old_term = signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            url = self.nats.start()
            return asyncio.run(self._main(url, self.supervisor, runs))
        finally:
            signal.signal(signal.SIGTERM, old_term)
            with _signals_ignored():
                killed = self.supervisor.stop_all(self.grace_s)
                self.nats.stop()
                shutil.rmtree(tmp, ignore_errors=True)
            if killed:
                self._say(f"killed after {self.grace_s:g} s: {', '.join(killed)}")

    async def _main(self, url: str, sup: Supervisor, runs: Sequence[UpRun]) -> list[RunOutcome]:
        bus = await connect(NatsOptions(url, "up", reconnect_attempts=2))
        client = RunClient(bus)
        await client.start()
        quit_ = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, quit_.set)
        try:
            for proc in self.layout:
                argv = [sys.executable, "-m", "services", proc.role, "--nats", url, "--name", proc.name]
                sup.spawn(proc.name, [*argv, "--http-port", "0", *proc.flags])
            return await self._guarded(self._work(client, runs), sup, quit_)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            await client.close()
            await bus.close()

    async def _work(self, client: RunClient, runs: Sequence[UpRun]) -> list[RunOutcome]:
        await client.wait_for([p.name for p in self.layout], self.start_timeout_s)
        if not self.quiet:
            ports = ", ".join(
                f"{h.service}:{h.http_port}" for h in sorted(client.hellos.values(), key=lambda h: h.service)
            )
            self._say(f"services up (metrics ports {ports})")
        outcomes = []
        for i, r in enumerate(runs):
            line = None if self.quiet else ProgressLine(self.stream, label=r.label, total=r.total_requests)
            try:
                outcomes.append(await client.run(RunRequest(run_id(r.label, i), r.spec, self.speed), line))
            finally:
                if line is not None:
                    line.close()
        return outcomes

    async def _guarded(self, work: Awaitable[T], sup: Supervisor, quit_: asyncio.Event) -> T:
        """``work``'s result, unless a signal (KeyboardInterrupt) or a dead child (ServiceFailure) comes first."""
        task = asyncio.ensure_future(work)
        stop = asyncio.ensure_future(quit_.wait())
        try:
            while True:
                done, _ = await asyncio.wait([task, stop], timeout=0.1, return_when=asyncio.FIRST_COMPLETED)
                if task in done:
                    return task.result()
                if stop in done:
                    raise KeyboardInterrupt
                if self.nats is not None and self.nats.proc is not None and self.nats.proc.poll() is not None:
                    raise ServiceFailure(f"nats-server stopped (exit code {self.nats.proc.returncode})")
                child = sup.exited()
                if child is not None:
                    code = child.proc.returncode
                    how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
                    tail = child.tail()
                    self._say(
                        f"service {child.name} stopped ({how}); last lines of {child.log_path}:\n{tail}"
                    )
                    last = tail.splitlines()[-1] if tail else "no output"
                    raise ServiceFailure(f"service {child.name} stopped ({how}): {last}")
        finally:
            for t in (task, stop):
                t.cancel()
            with contextlib.suppress(BaseException):
                await task

    def _say(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    """Cleanup must finish even if Ctrl-C is pressed again."""
    old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
