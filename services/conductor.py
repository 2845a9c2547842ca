"""The conductor: owns virtual time and the lifecycle of runs.

One run at a time: on a ``RunRequest`` it builds the run's components itself (for their ids and
the digests every host must match), broadcasts the ``RunConfig``, waits until every component
has a leader (``Ready``), then repeats: take the next window from its
:class:`~llmtwin.sim.windows.WindowPlanner` (the same class LocalRunner uses), wait for the pace
(``--speed``), send one ``GrantBatch`` per hosting service, wait for every ``DoneBatch``, and
report each component to the planner in component-id order, exactly as LocalRunner does. When
no window is left it collects the exports and publishes the ``RunOutcome``. A service that
reports an error, or stops sending heartbeats while the conductor waits for it, fails the run
with a message naming it -- unless it can be recovered: lost messages are sent again, a
restarted service catches up by replay and rejoins, a standby replica takes over
(``services/recovery.py``). A nats-server that does not answer is reported as such, never
blamed on a service.

The window loop has two halves. The run's task opens a window, then waits; the handler of the
last ``DoneBatch`` closes it and, when nothing has to be waited for (no pace deadline ahead,
no pause, no stop), opens the next one right there, so a window costs no task switch. When
something must be waited for, it hands the loop back to the task (``RunState.handback``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from llmtwin.errors import TwinError
from llmtwin.observe.catalog import Owner
from llmtwin.observe.families import METRICS_MODES
from llmtwin.observe.observations import ConductorWindow
from llmtwin.observe.run_info import run_info
from llmtwin.sim.windows import Grant, WindowPlanner
from proto import chunks, subjects
from proto.chunks import Reassembler
from proto.control import (
    Chunk,
    Collect,
    DoneBatch,
    GrantBatch,
    Heartbeat,
    Hello,
    Ready,
    Reply,
    RunConfig,
    RunControl,
    RunEnd,
    RunOutcome,
    RunRequest,
)
from proto.subjects import ANY
from services.base import Rejected, Service
from services.cluster import ClusterFactory
from services.config import ConductorConfig
from services.factory import code_digest
from services.fleet_metrics import FleetExporters
from services.metrics import ConductorMetrics
from services.pacing import Pacer, SpeedMeter
from services.run_failed import RunFailed
from services.run_results import KeptOutcomes, run_outcome, take_export
from services.run_state import RunState
from services.watchdog import Watchdog

log = logging.getLogger(__name__)


class Conductor(Service[ConductorConfig]):
    """The clock service: windows, pacing, pause/resume/stop, collection."""

    def setup(self) -> None:
        self.cmetrics = ConductorMetrics(self.registry)
        self.exporters = FleetExporters(self.registry)
        self.fleet = self.exporters.get(Owner.CONDUCTOR, self.cfg.metrics)
        self.speed = SpeedMeter()
        self.active: RunState | None = None
        self.watch: Watchdog | None = None
        """The active run's watchdog."""
        self.task: asyncio.Task[None] | None = None
        self.seen: dict[str, float] = {}
        """Service -> monotonic time of its last hello or heartbeat."""
        self.outcomes = KeptOutcomes()
        self.roles: dict[str, str] = {}
        """Service -> its role, from its hello."""

    async def on_start(self) -> None:
        await self.respond(subjects.run_start(), RunRequest, self._on_run_request)
        await self.respond(subjects.run_control(), RunControl, self._on_control)
        await self.subscribe(subjects.hello(ANY), Hello, self._on_hello, sender=_service)
        await self.subscribe(subjects.heartbeat(ANY), Heartbeat, self._on_heartbeat, sender=_service)

    async def on_reconnected(self) -> None:
        """Back after a lost connection (a nats-server restart): whatever was in flight may be
        lost, so send every owed message again."""
        state, watch = self.active, self.watch
        if state is not None and watch is not None:
            for svc in sorted(state.ready_services):
                await watch.resend(svc)

    async def on_stop(self) -> None:
        if self.active is not None and self.task is not None:
            self.active.fail("", f"conductor {self.name} is stopping")
            await asyncio.wait([self.task], timeout=10.0)

    def current_run(self) -> str:
        return self.active.run if self.active is not None else ""

    # -- controller requests -------------------------------------------------------------------

    async def _on_run_request(self, req: RunRequest) -> Reply:
        try:
            subjects.token(req.run, "run id")
            if self.active is not None:
                raise Rejected("stale", f"run {self.active.run} is in progress")
            factory = self.factories.get(req.spec.factory)
            if factory is None:
                raise Rejected("malformed", f"unknown component factory {req.spec.factory!r}")
            ids = sorted(c.id for c in factory.build(req.spec))
            if req.metrics and req.metrics not in METRICS_MODES:
                raise Rejected(
                    "malformed", f"metrics {req.metrics!r} is not one of {', '.join(METRICS_MODES)}"
                )
            config = RunConfig(
                req.run, req.spec, factory.digest(req.spec), code_digest(), metrics=req.metrics
            )
        except TwinError as exc:
            return Reply(False, str(exc))
        self.fleet = self.exporters.get(Owner.CONDUCTOR, req.metrics or self.cfg.metrics)
        if isinstance(factory, ClusterFactory):
            self.fleet.start_run(run_info(req.run, factory.scenario(req.spec)))
        self.speed = SpeedMeter()
        state = RunState(req, config, ids, WindowPlanner(ids), Pacer(req.speed))
        state.chunks = Reassembler(max_bytes=self.cfg.max_result_bytes)
        state.resumed.set()
        self.active = state
        self.task = asyncio.get_running_loop().create_task(self._conduct(state))
        return Reply(True)

    async def _on_control(self, cmd: RunControl) -> Reply:
        state = self.active
        if cmd.action == "outcome":
            return await self._republish(cmd.run)
        if state is None or state.run != cmd.run:
            return Reply(False, f"no run {cmd.run!r} in progress")
        if cmd.action == "pause" and state.resumed.is_set():
            state.resumed.clear()
            state.wake.set()
            self.cmetrics.paused.set(1)
        elif cmd.action == "resume":
            state.resumed.set()
            self.cmetrics.paused.set(0)
        elif cmd.action == "stop":
            state.stop = True
            state.stopped_by = cmd.by or "a controller"
            state.resumed.set()
            state.wake.set()
        log.info("%s: run %s: %s (by %s)", self.name, cmd.run, cmd.action, cmd.by or "a controller")
        return Reply(True)

    async def _republish(self, run: str) -> Reply:
        """Publish an ended run's outcome again (its controller may have missed it)."""
        if self.active is not None and self.active.run == run:
            return Reply(True)  # the outcome comes when the run ends
        pieces = self.outcomes.get(run)
        if pieces is None:
            return Reply(False, f"no run {run!r} here")
        for chunk in pieces:
            await self.publish(subjects.outcome(run), chunk)
        return Reply(True)

    # -- presence ------------------------------------------------------------------------------

    async def _on_hello(self, hello: Hello) -> None:
        self.seen[hello.service] = time.monotonic()
        self.roles[hello.service] = hello.role
        state, watch = self.active, self.watch
        if state is None or watch is None:
            return
        if state.phase == "setup":
            # A service that (re)connected while a run is being set up may have missed it.
            await self.publish(subjects.config(), state.config)
        else:
            await watch.presence(hello.service, hello.boot, reconnected=True)

    async def _on_heartbeat(self, beat: Heartbeat) -> None:
        self.seen[beat.service] = time.monotonic()
        state, watch = self.active, self.watch
        if state is not None and watch is not None and state.phase in ("running", "collecting"):
            await watch.presence(beat.service, beat.boot, reconnected=False)

    # -- run-scoped messages -------------------------------------------------------------------

    async def _on_ready(self, state: RunState, ready: Ready) -> None:
        self.seen[ready.service] = time.monotonic()
        if state.phase == "setup":
            state.join(ready)
        elif self.watch is not None:
            await self.watch.rejoin(ready)

    async def _on_done(self, state: RunState, done: DoneBatch) -> None:
        """The last DoneBatch of a window closes it and opens the next one."""
        batch = state.batches.get(done.service)
        if (
            not state.open
            or done.run != state.run
            or done.window != state.window
            or done.service not in state.owing()
            or batch is None
            or done.attempt != batch.attempt
            or done.service in state.recovering
        ):
            raise Rejected(
                "stale",
                f"DoneBatch of {done.service} for window {done.window} attempt {done.attempt} "
                f"(now {state.window}, {'open' if state.open else 'closed'})",
            )
        if done.error:
            state.fail(done.service, done.error)
            return
        state.dones[done.service] = done
        if done.completed >= 0 and not state.behind_only(done.service):  # the actor's count is current
            state.completed[done.service] = done.completed
        if not state.owing() and state.failure is None:
            await self.window_done(state)

    async def window_done(self, state: RunState) -> None:
        """Close the window; open the next one now if nothing must be waited for, else hand back."""
        try:
            closed, sent = state.close_window()
            m = self.cmetrics
            m.window_duration.observe(time.perf_counter() - state.window_opened)
            m.windows.inc(closed)
            m.envelopes.inc(sent)
            m.virtual_time.set(state.now_s)
            m.lag.set(state.pacer.lag_s)
            await self._progress(state)
            full = state.held.due(self.cfg.metrics_interval_s)
            if full and not state.stop:
                await self._publish_grants(state, state.open_flush(full))
                return
            while not state.stop and state.resumed.is_set():
                grants = state.planner.next_window(state.req.until_s)
                if not grants or state.pacer.delay_s(grants[0].time) > 0:
                    state.planned = grants
                    break
                if await self._open(state, grants):
                    return
        except RunFailed as exc:
            state.fail(exc.service, exc.message)
        except Exception as exc:  # a bug here must still end the run with a message
            log.exception("%s: window %d failed", self.name, state.window)
            state.fail(self.name, f"conductor: {exc!r}")
        state.handback.set()

    async def _on_export(self, state: RunState, chunk: Chunk) -> None:
        take_export(state, chunk, self.codec)

    # -- the run -------------------------------------------------------------------------------

    async def _conduct(self, state: RunState) -> None:
        run = state.run
        self.watch = Watchdog(self, state)
        watchdog = asyncio.get_running_loop().create_task(self.watch.run())
        outcome: RunOutcome
        try:
            bulk = self.bus.max_payload
            state.subs = [
                await self.subscribe(
                    subjects.ready(run, ANY), Ready, lambda m: self._on_ready(state, m), sender=_service
                ),
                await self.subscribe(
                    subjects.done(run, ANY),
                    DoneBatch,
                    lambda m: self._on_done(state, m),
                    max_bytes=bulk,
                    sender=_service,
                ),
                await self.subscribe(
                    subjects.export(run, ANY),
                    Chunk,
                    lambda m: self._on_export(state, m),
                    max_bytes=bulk,
                    sender=lambda c: c.stream,
                ),
            ]
            await self.publish(subjects.config(), state.config)
            await self.watch.await_ready()
            state.phase = "running"
            state.marks["ready"] = time.perf_counter()
            state.pacer.restart()  # the pace counts from the first window, not from set-up
            await self._windows(state)
            state.marks["windows_done"] = time.perf_counter()
            state.phase = "collecting"
            outcome = await self._collect(state)
            self.cmetrics.runs.labels("stopped" if state.stop else "completed").inc()
        except RunFailed as exc:
            log.error("%s: run %s failed: %s", self.name, run, exc.message)
            outcome = RunOutcome(run, state.now_s, {}, state.stats(), exc.message, exc.service)
            self.cmetrics.runs.labels("failed").inc()
        except Exception as exc:  # a bug here must still end the run with a message
            log.exception("%s: run %s failed", self.name, run)
            outcome = RunOutcome(run, state.now_s, {}, state.stats(), f"conductor: {exc!r}", self.name)
            self.cmetrics.runs.labels("failed").inc()
        finally:
            watchdog.cancel()
            state.phase = "done"
            self.fleet.end_run()
        await self._progress(state, force=True)
        for sub in state.subs:
            await self.forget(sub)
        self.active, self.watch = None, None  # ready for the next run before anyone hears this one ended
        await self.publish(subjects.config(), RunEnd(run, outcome.error))
        pieces = chunks.split(f"{self.name}-{run}", self.codec.encode(outcome), self.bus.max_payload)
        self.outcomes.keep(run, pieces)
        for chunk in pieces:
            await self.publish(subjects.outcome(run), chunk)

    async def _windows(self, state: RunState) -> None:
        for svc in state.ready_services:
            self.seen.setdefault(svc, time.monotonic())
        state.fix_hosts()
        while not state.stop:
            await self._pause_point(state)
            state.check()
            grants = (
                state.planned if state.planned is not None else state.planner.next_window(state.req.until_s)
            )
            state.planned = None
            if not grants:
                break
            await self._pace(state, grants[0].time)
            if state.stop:
                break  # the window was planned but never opened: the run ends before it
            state.check()
            state.handback.clear()
            if not await self._open(state, grants):
                continue  # every step of the window held back: no round trip
            await state.handback.wait()  # DoneBatch handlers run windows until one must wait
            state.check()
        if state.held.queued:  # stopped too: a stopped run's exports hold every window it closed
            await self._flush(state)

    async def _flush(self, state: RunState) -> None:
        """Hand over the steps still held back (docs/architecture.md, "Silent steps")."""
        state.check()
        state.handback.clear()
        await self._publish_grants(state, state.open_flush())
        if state.expected:
            await state.handback.wait()
        state.check()

    async def _publish_grants(self, state: RunState, batches: dict[str, GrantBatch]) -> None:
        for svc, batch in batches.items():
            if svc not in state.recovering:  # it gets the grant once it has caught up
                await self.publish(state.grant_subjects[svc], batch)

    async def _pause_point(self, state: RunState) -> None:
        """Hold here while paused; the pause does not count against the pace."""
        if state.resumed.is_set():
            return
        t_pause = time.perf_counter()
        await self._progress(state, force=True)
        await state.resumed.wait()
        state.pacer.paused_s += time.perf_counter() - t_pause

    async def _pace(self, state: RunState, now: float) -> None:
        """Wait until wall time reaches the window's deadline (stop and failures cut it short)."""
        while state.failure is None and not state.stop:
            delay = state.pacer.delay_s(now)
            if delay <= 0:
                return
            state.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(state.wake.wait(), delay)
            await self._pause_point(state)

    async def _open(self, state: RunState, grants: list[Grant]) -> bool:
        """Open the window of ``grants``; False when every step in it was held back (the window
        is closed and nothing was sent)."""
        state.pacer.opened(grants[0].time)
        batches = state.open_window(grants)
        await self._publish_grants(state, batches)
        return bool(batches)

    async def _collect(self, state: RunState) -> RunOutcome:
        await self.publish(subjects.collect(state.run), Collect(state.run, state.now_s))
        timeout_s = self.cfg.collect_timeout_s
        try:
            await asyncio.wait_for(state.all_exported.wait(), timeout_s)
        except TimeoutError:
            missing = sorted(state.hosting_services() - set(state.exports))
            raise RunFailed(
                missing[0], f"no results from {', '.join(missing)} after {timeout_s:g} s"
            ) from None
        state.check()
        return run_outcome(state)

    async def _progress(self, state: RunState, force: bool = False) -> None:
        """Progress to the controller, and the achieved pace to the metrics: a few times a
        second (``progress_interval_s``), not every window (a run has tens of thousands)."""
        wall = time.perf_counter()
        if force or wall - state.last_progress >= self.cfg.progress_interval_s:
            state.last_progress = wall
            self.fleet.observe_conductor(
                ConductorWindow(state.now_s, state.pacer.speed, self.speed.add(state.now_s))
            )
            await self.publish(subjects.progress(state.run), state.progress())


def _service(msg: Hello | Heartbeat | Ready | DoneBatch) -> str:
    """The service a message says it comes from (its subject must end with that name)."""
    return msg.service
