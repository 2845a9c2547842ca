"""The conductor: owns virtual time and the lifecycle of runs.

One run at a time: on a ``RunRequest`` it builds the run's components itself (for their ids and
the digests every host must match), broadcasts the ``RunConfig``, waits until every component
has a leader (``Ready``), then repeats: take the next window from its
:class:`~llmtwin.sim.windows.WindowPlanner` (the same class LocalRunner uses), wait for the pace
(``--speed``), send one ``GrantBatch`` per hosting service, wait for every ``DoneBatch``, and
report each component to the planner in component-id order, exactly as LocalRunner does. When
no window is left it collects the exports and publishes the ``RunOutcome``. A service that
reports an error, or stops sending heartbeats while the conductor waits for it, fails the run
with a message naming it.

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
from llmtwin.sim.windows import Grant, WindowPlanner
from proto import chunks, subjects
from proto.control import (
    Chunk,
    Collect,
    DoneBatch,
    ExportBatch,
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
from services.base import Rejected, Service
from services.config import ConductorConfig
from services.factory import code_digest
from services.metrics import ConductorMetrics
from services.pacing import Pacer
from services.run_state import RunFailed, RunState

log = logging.getLogger(__name__)


class Conductor(Service[ConductorConfig]):
    """The clock service: windows, pacing, pause/resume/stop, collection."""

    def setup(self) -> None:
        self.cmetrics = ConductorMetrics(self.registry)
        self.active: RunState | None = None
        self.task: asyncio.Task[None] | None = None
        self.seen: dict[str, float] = {}
        """Service -> monotonic time of its last hello or heartbeat."""

    async def on_start(self) -> None:
        await self.respond(subjects.run_start(), RunRequest, self._on_run_request)
        await self.respond(subjects.run_control(), RunControl, self._on_control)
        await self.subscribe(subjects.hello(), Hello, self._on_hello)
        await self.subscribe(subjects.heartbeat(), Heartbeat, self._on_heartbeat)

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
            config = RunConfig(req.run, req.spec, factory.digest(req.spec), code_digest())
        except TwinError as exc:
            return Reply(False, str(exc))
        state = RunState(req, config, ids, WindowPlanner(ids), Pacer(req.speed))
        state.resumed.set()
        self.active = state
        self.task = asyncio.get_running_loop().create_task(self._conduct(state))
        return Reply(True)

    async def _on_control(self, cmd: RunControl) -> Reply:
        state = self.active
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
            state.resumed.set()
            state.wake.set()
        log.info("%s: run %s: %s", self.name, cmd.run, cmd.action)
        return Reply(True)

    # -- presence ------------------------------------------------------------------------------

    async def _on_hello(self, hello: Hello) -> None:
        self.seen[hello.service] = time.monotonic()
        state = self.active
        if state is not None and state.phase == "setup":
            # A service that (re)connected while a run is being set up may have missed it.
            await self.publish(subjects.config(), state.config)

    async def _on_heartbeat(self, beat: Heartbeat) -> None:
        self.seen[beat.service] = time.monotonic()

    # -- run-scoped messages -------------------------------------------------------------------

    async def _on_ready(self, state: RunState, ready: Ready) -> None:
        self.seen[ready.service] = time.monotonic()
        if state.phase != "setup":
            log.warning("%s: %s joined run %s late; it stands by", self.name, ready.service, ready.run)
            return
        state.join(ready)

    async def _on_done(self, state: RunState, done: DoneBatch) -> None:
        """The last DoneBatch of a window closes it and opens the next one."""
        if done.run != state.run or done.window != state.window or done.service not in state.expected:
            raise Rejected(
                "stale", f"DoneBatch of {done.service} for window {done.window} (now {state.window})"
            )
        if done.error:
            state.fail(done.service, done.error)
            return
        state.dones[done.service] = done
        if done.completed >= 0:
            state.completed[done.service] = done.completed
        if len(state.dones) == len(state.expected) and state.failure is None:
            await self._window_done(state)

    async def _window_done(self, state: RunState) -> None:
        """Close the window; open the next one now if nothing must be waited for, else hand back."""
        try:
            sent = state.close_window()
            m = self.cmetrics
            m.window_duration.observe(time.perf_counter() - state.window_opened)
            m.windows.inc()
            m.envelopes.inc(sent)
            m.virtual_time.set(state.now_s)
            m.lag.set(state.pacer.lag_s)
            await self._progress(state)
            if not state.stop and state.resumed.is_set():
                grants = state.planner.next_window(state.req.until_s)
                if grants and state.pacer.delay_s(grants[0].time) <= 0:
                    await self._open(state, grants)
                    return
                state.planned = grants
        except RunFailed as exc:
            state.fail(exc.service, exc.message)
        except Exception as exc:  # a bug here must still end the run with a message
            log.exception("%s: window %d failed", self.name, state.window)
            state.fail(self.name, f"conductor: {exc!r}")
        state.handback.set()

    async def _on_export(self, state: RunState, chunk: Chunk) -> None:
        data = state.chunks.add(chunk)
        if data is None:
            return
        batch = self.codec.decode(data, ExportBatch)
        if batch.error:
            state.fail(batch.service, batch.error)
            return
        state.exports[batch.service] = batch
        if state.hosting_services() <= set(state.exports):
            state.all_exported.set()

    # -- the run -------------------------------------------------------------------------------

    async def _conduct(self, state: RunState) -> None:
        run = state.run
        watchdog = asyncio.get_running_loop().create_task(self._watch(state))
        outcome: RunOutcome
        try:
            state.subs = [
                await self.subscribe(subjects.ready(run), Ready, lambda m: self._on_ready(state, m)),
                await self.subscribe(subjects.done(run), DoneBatch, lambda m: self._on_done(state, m)),
                await self.subscribe(subjects.export(run), Chunk, lambda m: self._on_export(state, m)),
            ]
            await self.publish(subjects.config(), state.config)
            await self._await_ready(state)
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
        await self._progress(state, force=True)
        for sub in state.subs:
            await self.forget(sub)
        self.active = None  # ready for the next run before anyone hears this one ended
        await self.publish(subjects.config(), RunEnd(run, outcome.error))
        data = self.codec.encode(outcome)
        for chunk in chunks.split(f"{self.name}-{run}", data, self.bus.max_payload):
            await self.publish(subjects.outcome(run), chunk)

    async def _await_ready(self, state: RunState) -> None:
        timeout_s = self.cfg.ready_timeout_s
        try:
            await asyncio.wait_for(state.ready.wait(), timeout_s)
        except TimeoutError:
            missing = [c for c in state.components if c not in state.leaders]
            raise RunFailed(
                "", f"no service hosts {', '.join(missing)} after {timeout_s:g} s (run {state.run})"
            ) from None
        state.check()
        log.info("%s: run %s ready: %s", self.name, state.run, dict(sorted(state.leaders.items())))

    async def _watch(self, state: RunState) -> None:
        """Fail the run when a service it waits for stops sending heartbeats, or stays alive but
        never answers a window (a message lost, e.g. across a NATS server restart)."""
        dead_after_s = self.cfg.dead_after_s
        while True:
            await asyncio.sleep(min(1.0, dead_after_s / 4))
            if state.phase == "running":
                owing = state.expected - set(state.dones)
                waited = time.perf_counter() - state.window_opened
                if owing and waited > self.cfg.window_timeout_s:
                    state.fail(
                        sorted(owing)[0],
                        f"no answer from {', '.join(sorted(owing))} for window {state.window} "
                        f"(t={state.now_s!r} s) after {waited:.0f} s, though they are alive",
                    )
            elif state.phase == "collecting":
                owing = state.hosting_services() - set(state.exports)
            else:
                continue
            now = time.monotonic()
            for svc in sorted(owing):
                silent = now - self.seen.get(svc, now)
                if silent > dead_after_s:
                    hosted = sorted(c for c, s in state.leaders.items() if s == svc)
                    state.fail(
                        svc,
                        f"{svc} stopped answering (no heartbeat for {silent:.0f} s) in window {state.window} "
                        f"at t={state.now_s!r} s; it hosts {', '.join(hosted)}",
                    )

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
            await self._open(state, grants)
            await state.handback.wait()  # DoneBatch handlers run windows until one must wait
            state.check()

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

    async def _open(self, state: RunState, grants: list[Grant]) -> None:
        state.pacer.opened(grants[0].time)
        for svc, batch in state.open_window(grants).items():
            await self.publish(state.grant_subjects[svc], batch)

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
        parts = {cid: part for batch in state.exports.values() for cid, part in batch.parts.items()}
        missing = [c for c in state.components if c not in parts]
        if missing:
            raise RunFailed("", f"no export for {', '.join(missing)}")
        return RunOutcome(state.run, state.now_s, dict(sorted(parts.items())), state.stats())

    async def _progress(self, state: RunState, force: bool = False) -> None:
        wall = time.perf_counter()
        if force or wall - state.last_progress >= self.cfg.progress_interval_s:
            state.last_progress = wall
            await self.publish(subjects.progress(state.run), state.progress())
