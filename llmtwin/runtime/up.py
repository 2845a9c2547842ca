"""``llmtwin up``'s engine: a private nats-server, every service as its own process, runs, cleanup.

:class:`Launcher` starts ``.venv/bin/nats-server`` on a free loopback port with one user per
process (:mod:`llmtwin.runtime.private_bus`: nkeys generated for this ``up`` only, role
permissions, no monitoring port) and one ``python -m services ROLE`` process per service
(forked from this process where it can be: :mod:`llmtwin.runtime.forked`), waits until each has
said hello, runs the runs one after the other through the conductor (showing live progress),
and stops everything: SIGTERM to every child, a grace period, SIGKILL for stragglers, the
server last, keys and temporary files removed. The same cleanup runs on Ctrl-C, on SIGTERM,
and when the run cannot go on.

It supervises: a service other than the conductor that dies is started again (up to
``max_restarts`` times each) and catches up by replay (``services/recovery.py``); a
nats-server that dies is started again on the same port, the services reconnect and the open
window is sent again; the results do not change. A conductor that dies ends the run (its
window books are gone) with a message naming it, as does a service that keeps dying, a
nats-server that does not answer for ``server_timeout_s``, and a run someone stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import math
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TextIO, TypeVar

from llmtwin.errors import ServiceFailure, TwinError
from llmtwin.runtime.layout import CONDUCTOR, ServiceProc
from llmtwin.runtime.observing import Observatory, ObserveOptions, write_endpoints
from llmtwin.runtime.placement import AutoPlacement
from llmtwin.runtime.private_bus import PrivateBus, TlsFiles
from llmtwin.runtime.processes import Child, Supervisor
from llmtwin.runtime.progress_line import ProgressLine
from llmtwin.runtime.runs import UpRun, check_not_stopped, run_id
from proto.control import RunOutcome, RunRequest
from services.client import RunClient
from services.main import main as service_main
from services.nats_bus import connect

T = TypeVar("T")

After = Callable[[list[RunOutcome]], None]
"""What ``up`` does with the outcomes, the services still up (writes the results)."""


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
        auto_cpus: AutoPlacement | None = None,
        tls: TlsFiles | None = None,
        env: Mapping[str, str] | None = None,
        max_restarts: int = 3,
        server_timeout_s: float = 300.0,
        metrics: str = "",
        observe: ObserveOptions | None = None,
        endpoints: Path | None = None,
    ) -> None:
        self.layout = list(layout)
        self.cpus = cpus
        """CPUs for nats-server and every service (None: wherever the OS puts them)."""
        self.auto_cpus = auto_cpus
        """``--cpus auto``: decides ``cpus`` before anything starts (``runtime/placement.py``)."""
        self.speed = speed
        self.stream, self.quiet = stream, quiet
        self.log_dir = log_dir
        self.start_timeout_s = start_timeout_s
        self.grace_s = grace_s
        self.tls = tls
        self.env = dict(env or {})
        """Extra environment of every service (e.g. TWIN_SCENARIO_DIRS)."""
        self.max_restarts = max_restarts
        """Restarts per service process (and of nats-server) before giving up."""
        self.server_timeout_s = server_timeout_s
        self.metrics = metrics
        """Fleet metrics naming of the runs (``--metrics``; empty: the services' default)."""
        self.observe = observe
        self.observatory: Observatory | None = None
        self.endpoints = endpoints
        """Where to write endpoints.json (None: nowhere)."""
        self.supervisor: Supervisor | None = None
        self._gate: int | None = None
        """Write end of the pipe the forked services wait on before they start."""
        self.bus: PrivateBus | None = None
        self.server_restarts = 0
        self.server_stuck = False
        """nats-server was not answering when the work ended: the services cannot stop
        gracefully (they would wait on it), so they get a short grace."""

    def run(self, runs: Sequence[UpRun], after: After | None = None) -> list[RunOutcome]:
        """Do ``runs`` in order on the services :meth:`started` started, or start them for this
        and stop them after. ``after`` is called with the outcomes once the runs are done, the
        services still up (to write the results)."""
        if self.bus is None or self.supervisor is None:
            with self.started():
                return self.run(runs, after)
        return asyncio.run(self._main(self.bus, self.supervisor, runs, after))

    @contextlib.contextmanager
    def started(self) -> Iterator[None]:
        """nats-server and every service running; all stopped at the end, also on errors and
        signals. The services are forked from this process (``runtime/forked.py``): enter this
        before starting any thread (a plot worker) or event loop."""
        self._place()  # first: nothing to clean up if it fails
        tmp = Path(tempfile.mkdtemp(prefix="llmtwin-up-"))  # 0700: keys and configuration live here
        # SIGTERM outside the event loop (starting the server, spawning) must clean up too.
        old_term = signal.signal(signal.SIGTERM, _raise_interrupt)
        sup = self.supervisor = Supervisor(self.log_dir or tmp / "logs", cpus=self.cpus)
        if self.observe is not None:
            self.observatory = Observatory(self.observe, [p.name for p in self.layout])
        try:
            self.bus = PrivateBus(tmp, {p.name: p.role for p in self.layout}, tls=self.tls, cpus=self.cpus)
            self.bus.start()
            self._spawn(self.bus, sup)
            yield
        finally:
            signal.signal(signal.SIGTERM, old_term)
            with _signals_ignored():
                grace = min(self.grace_s, 2.0) if self.server_stuck else self.grace_s
                killed = sup.stop_all(grace)
                if self.observatory is not None:
                    self.observatory.stop()
                if self.bus is not None:
                    self.bus.server.stop()
                shutil.rmtree(tmp, ignore_errors=True)
            self._close_gate()
            self.bus = self.supervisor = None
            if killed:
                self._say(f"killed after {grace:g} s: {', '.join(killed)}")

    def _spawn(self, private: PrivateBus, sup: Supervisor) -> None:
        """One process per service: ``python -m services ROLE ...``, forked from this one. A
        forked service starts once the gate opens (:meth:`_open_gate`): it would be too quick to
        say hello before ``up`` listens."""
        url = private.server.url
        ports = self.observatory.ports if self.observatory is not None else {}
        gate, self._gate = os.pipe()
        # What this process holds now lives as long as it: out of the collector's sight, so a
        # child's collections neither walk nor write (copy) those pages.
        gc.freeze()
        for proc in self.layout:
            port = ports.get(proc.name, 0)
            env = private.child_env(proc.name, {**os.environ, **self.env})
            main = functools.partial(_after_gate, gate, proc.args(url, port))
            sup.spawn(proc.name, proc.argv(url, port), env, main=main, pass_fds=[gate])
        os.close(gate)

    def _open_gate(self) -> None:
        """Let every forked service start (one byte each)."""
        if self._gate is not None:
            with contextlib.suppress(BrokenPipeError):  # none was forked: nobody holds the read end
                os.write(self._gate, b"\0" * len(self.layout))
        self._close_gate()

    def _close_gate(self) -> None:
        if self._gate is not None:
            os.close(self._gate)
            self._gate = None

    async def _main(
        self, private: PrivateBus, sup: Supervisor, runs: Sequence[UpRun], after: After | None
    ) -> list[RunOutcome]:
        bus = await connect(private.options(drain_timeout_s=2.0))  # little to drain: keep exits quick
        client = RunClient(bus, name="up", conductor=CONDUCTOR, server_timeout_s=self.server_timeout_s)
        await client.start()
        self._open_gate()  # up hears their hello from now on
        quit_ = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, quit_.set)
        try:
            outcomes = await self._guarded(self._work(client, runs, private.server.url, after), sup, quit_)
            linger = self.observe.linger_s if self.observe is not None else 0.0
            if linger > 0:
                self._say(f"llmtwin up: everything stays up for {linger:g} s (Ctrl-C ends it)")
                with contextlib.suppress(KeyboardInterrupt):
                    await self._guarded(asyncio.sleep(linger), sup, quit_)
            return outcomes
        finally:
            self.server_stuck = client.server_silent_since is not None
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            with contextlib.suppress(TimeoutError):  # the services are stopped next anyway
                await asyncio.wait_for(client.close(), 5.0)
            await bus.close()

    async def _work(
        self, client: RunClient, runs: Sequence[UpRun], nats_url: str, after: After | None = None
    ) -> list[RunOutcome]:
        await client.wait_for([p.name for p in self.layout], self.start_timeout_s)
        ports = {p.name: client.ports.get(p.name, 0) for p in self.layout}
        if not self.quiet:
            listed = ", ".join(f"{name}:{port}" for name, port in sorted(ports.items()))
            self._say(f"services up (metrics ports {listed})")
        prometheus = await self._start_observing()
        if self.endpoints is not None:
            write_endpoints(self.endpoints, nats_url, ports, prometheus)
        outcomes = []
        for i, r in enumerate(runs):
            line = None if self.quiet else ProgressLine(self.stream, label=r.label, total=r.total_requests)
            try:
                req = RunRequest(run_id(r.label, i), r.spec, self.speed, metrics=self.metrics)
                outcome = await client.run(req, line)
            finally:
                if line is not None:
                    line.close()
            check_not_stopped(r.label, outcome)
            outcomes.append(outcome)
        if after is not None:
            if self.observatory is None and self.supervisor is not None:
                # Nothing needs the services any more (no final scrape, no lingering): they
                # stop while the results are written instead of after.
                self.supervisor.terminate_all()
            await asyncio.to_thread(after, outcomes)
        await self._draw()
        return outcomes

    def _place(self) -> None:
        """``--cpus auto``: choose one CPU for nats-server and every service where hand-offs are
        faster there (``runtime/placement.py``), before either starts. Before, because nats-server's
        Go runtime sizes its scheduler once, to the CPUs it may use when it starts: started on two
        and then moved to one, it keeps two schedulers taking turns on that CPU, and a round trip
        through it costs about 6 us more (docs/performance.md). Restarts start there too."""
        auto = self.auto_cpus
        if auto is None:
            return
        placed = auto.decide(sum(p.role == "device" for p in self.layout))
        self.cpus = placed.cpus
        if not self.quiet:
            where = (
                f"on CPU {','.join(map(str, sorted(placed.cpus)))}"
                if placed.cpus is not None
                else "where the OS puts them"
            )
            self._say(f"placement: nats-server and the services {where} ({placed.why}; --cpus to choose)")

    async def _start_observing(self) -> str:
        """Start Prometheus (``--observe``); its URL, or "" (a failure is said, the run goes on)."""
        obs = self.observatory
        if obs is None:
            return ""
        self._say("llmtwin up: starting Prometheus (its first scrape takes about 5 s)")
        try:
            url = await asyncio.to_thread(obs.start)
        except TwinError as exc:
            self._say(f"llmtwin up: no Prometheus, the run goes on without it: {exc.args[0]}")
            self.observatory = None
            return ""
        self._say(
            f"llmtwin up: Prometheus at {url} scraping every service (its data in {obs.opts.out / 'prometheus'})"
        )
        return url

    async def _draw(self) -> None:
        """The dashboards as pictures, once Prometheus has the final values (never fatal)."""
        obs = self.observatory
        if obs is None or not obs.opts.render:
            return
        try:
            await asyncio.to_thread(obs.settle)
            empty = await asyncio.to_thread(obs.render)
        except Exception as exc:
            why = exc.args[0] if isinstance(exc, TwinError) and exc.args else exc
            self._say(f"llmtwin up: dashboards not drawn: {why}")
            return
        self._say(f"llmtwin up: dashboards drawn in {obs.opts.out / 'dashboards'}/")
        if empty:
            self._say(f"llmtwin up: panels without data: {', '.join(empty)}")

    async def _guarded(self, work: Awaitable[T], sup: Supervisor, quit_: asyncio.Event) -> T:
        """``work``'s result, unless a signal (KeyboardInterrupt) or a failure it cannot recover
        from (ServiceFailure) comes first; restarts what died meanwhile."""
        task = asyncio.ensure_future(work)
        stop = asyncio.ensure_future(quit_.wait())
        try:
            while True:
                done, _ = await asyncio.wait([task, stop], timeout=0.1, return_when=asyncio.FIRST_COMPLETED)
                if task in done:
                    return task.result()
                if stop in done:
                    raise KeyboardInterrupt
                self._server_alive()
                child = sup.exited()
                if child is not None:
                    self._revive(sup, child)
        finally:
            for t in (task, stop):
                t.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait([task], timeout=5.0)  # its drains must not hold the exit

    def _server_alive(self) -> None:
        """Start nats-server again on its port if it died (ServiceFailure past the restarts)."""
        server = self.bus.server if self.bus is not None else None
        if server is None or server.proc is None or server.proc.poll() is None:
            return
        how = _how(server.proc.returncode)
        if self.server_restarts >= self.max_restarts:
            raise ServiceFailure(f"nats-server stopped ({how}), {self.server_restarts} times: giving up")
        self.server_restarts += 1
        self._say(f"nats-server stopped ({how}); starting it again on port {server.port}")
        server.restart()

    def _revive(self, sup: Supervisor, child: Child) -> None:
        """Start a dead service again, or stop everything naming it."""
        how = _how(child.proc.wait())  # it has exited: no wait
        tail = child.tail()
        last = tail.splitlines()[-1] if tail else "no output"
        if child.name == CONDUCTOR or child.restarts >= self.max_restarts:
            self._say(f"service {child.name} stopped ({how}); last lines of {child.log_path}:\n{tail}")
            why = (
                "the run cannot go on without it"
                if child.name == CONDUCTOR
                else f"it was restarted {child.restarts} times"
            )
            raise ServiceFailure(f"service {child.name} stopped ({how}): {why}; {last}")
        self._say(
            f"service {child.name} stopped ({how}); restarting it ({child.restarts + 1} of {self.max_restarts})"
        )
        sup.respawn(child)

    def _say(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()


def _after_gate(gate: int, args: list[str]) -> int:
    """A forked service: wait for ``up``'s go (or its end: the pipe's write end is up's alone),
    then run."""
    os.read(gate, 1)
    os.close(gate)
    return service_main(args)


def _how(code: int) -> str:
    return f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"


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
