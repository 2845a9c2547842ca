"""A service that hosts components: the generator, balancer and device services.

Per run it builds every component (deterministically, like every other process), keeps the
ones its :class:`~services.selection.Selector` picks, answers ``Ready`` with the digests of
what it built, and then only reacts:

* a ``GrantBatch`` (window w, time T) brings the envelopes for its components produced since
  its last grant, lists its components to step and, for each, how many envelopes stamped <= T
  it must hold. It hands exactly those to ``step``, sorted by the envelope key (arrival order
  is never used), and answers one ``DoneBatch`` for the whole grant with what the steps sent
  (the conductor relays it to the receivers' hosts; components in the grant's ``follow`` list
  are stepped but what they send is only digested). Under a horizon grant it also steps the
  windows after w that only its own components have, up to the horizon
  (``services/window_steps.py``). Anything that goes wrong after the grant
  is understood becomes an error ``DoneBatch``, so the conductor never waits for an answer
  that will not come. It keeps the last window's answer: a grant for that window again (the
  first answer may have been lost) is answered from it, without stepping twice;
* ``Collect`` finishes its components and sends their exports to the conductor (kept, and
  sent again on a repeated ``Collect``).

A restarted service that is asked to catch up (``RunConfig.catch_up`` = k) rebuilds every
component and replays windows 1..k in-process with :class:`~llmtwin.sim.local.LocalRunner`
(the code ``llmtwin simulate`` runs), in a worker thread so that its heartbeats go on, then
keeps its own components and mailboxes and reports their state in ``Ready``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from llmtwin.errors import ProtocolError, TwinError
from llmtwin.observe.observations import TokenPieces, split_pieces
from llmtwin.sim.local import LocalRunner
from llmtwin.sim.mailbox import Mailbox
from llmtwin.sim.windows import WindowPlanner
from proto import chunks, subjects
from proto.control import (
    Chunk,
    Collect,
    ExportBatch,
    GrantBatch,
    Ready,
    RunConfig,
    RunEnd,
    TokenReport,
)
from proto.subjects import ANY
from services.base import Rejected, Service
from services.config import HostConfig
from services.factory import code_digest
from services.fleet_metrics import FleetExporters
from services.fleet_observer import RecordingPlans, hosted_fleet_observer
from services.hosted_run import HostedRun
from services.metrics import HostMetrics
from services.planner import RemotePlanProvider
from services.window_steps import WindowStepper

log = logging.getLogger(__name__)


class HostService(Service[HostConfig]):
    """Hosts the components its selector picks, for whatever run the conductor configures."""

    def setup(self) -> None:
        self.selector = self.cfg.selector()
        self.host_metrics = HostMetrics(self.registry)
        self.stepper = WindowStepper(self.name, self.codec, self.host_metrics)
        self.fleet_exporters = FleetExporters(self.registry)
        self.runs: dict[str, HostedRun] = {}
        self._configuring: set[str] = set()

    async def on_start(self) -> None:
        await self.subscribe(subjects.config(), RunConfig | RunEnd, self._on_config)

    async def on_stop(self) -> None:
        for run in list(self.runs):
            await self._drop(run)

    def current_run(self) -> str:
        return next(iter(self.runs), "")

    # -- run set-up and tear-down ------------------------------------------------------------

    async def _on_config(self, cmd: RunConfig | RunEnd) -> None:
        if isinstance(cmd, RunEnd):
            await self._drop(cmd.run)
            return
        if (cmd.to and cmd.to != self.name) or cmd.run in self._configuring:
            return
        have = self.runs.get(cmd.run)
        if have is not None:
            if not cmd.catch_up:  # repeated for late joiners: our Ready may have been lost
                await self.publish(subjects.ready(cmd.run, self.name), have.ready)
                return
            await self._drop(cmd.run)  # the conductor wants it rebuilt by a replay
        self._configuring.add(cmd.run)
        try:
            await self._configure(cmd)
        finally:
            self._configuring.discard(cmd.run)

    async def _configure(self, cfg: RunConfig) -> None:
        run, spec = cfg.run, cfg.spec
        ready_subject = subjects.ready(run, self.name)
        try:
            factory = self.factories.get(spec.factory)
            if factory is None:
                raise ProtocolError(f"unknown component factory {spec.factory!r}")
            provider = (
                RecordingPlans(
                    RemotePlanProvider(
                        self.bus,
                        self.codec,
                        asyncio.get_running_loop(),
                        spec,
                        self.cfg.plan_timeout_s,
                        self.cfg.plan_retry_s,
                    )
                )
                if factory.needs_planner(spec)
                else None
            )
            built = factory.build(spec, provider)
            digest = factory.digest(spec)
            runner = None
            if cfg.catch_up:
                runner = LocalRunner(built)
                t0 = time.perf_counter()
                await asyncio.to_thread(runner.advance, cfg.until_s, cfg.catch_up)
                log.warning(
                    "%s: run %s: replayed windows 1..%d in %.1f s",
                    self.name, run, cfg.catch_up, time.perf_counter() - t0,
                )  # fmt: skip
            hosted = {c.id: c for c in built if self.selector.role(c.id) is not None}
            offload = {cid for cid in hosted if factory.may_block(spec, cid)}
        except TwinError as exc:
            log.error("%s: cannot build run %s: %s", self.name, run, exc)
            await self.publish(ready_subject, Ready(run, self.name, [], error=f"{self.name}: {exc}"))
            return
        followers = sorted(cid for cid in hosted if self.selector.role(cid) == "follower")
        acting = sorted(cid for cid in hosted if self.selector.role(cid) == "actor")
        leaders = sorted(c for c in hosted if c not in followers and c not in acting)
        mail = {cid: runner.mailbox(cid) if runner else Mailbox() for cid in hosted}
        ready = Ready(
            run,
            self.name,
            leaders,
            followers,
            "",
            digest,
            code_digest(),
            caught_up=cfg.catch_up,
            next_time_s={cid: c.next_time() for cid, c in hosted.items()} if runner else {},
            pending={cid: len(box) for cid, box in mail.items()} if runner else {},
            boot=self.boot,
            acting=acting,
        )
        planner = runner.planner.subset(hosted) if runner else WindowPlanner(hosted)
        state = HostedRun(
            run,
            hosted,
            offload,
            ready,
            mail,
            planner,
            silent={c.id: c.silent_kinds() for c in built},
            done_subject=subjects.done(run, self.name),
            acting=frozenset(acting),
        )
        state.fleet = hosted_fleet_observer(  # an acting replica's metrics are its leader's
            cfg,
            factory,
            built,
            {cid: c for cid, c in hosted.items() if cid not in state.acting},
            followers,
            provider,
            exporters=self.fleet_exporters,
            mode=cfg.metrics or self.cfg.metrics,
            interval_s=self.cfg.metrics_interval_s,
        )
        state.last.window = cfg.catch_up
        state.counters = [c for c in hosted.values() if isinstance(getattr(c, "completed", None), int)]
        if hosted:
            self.runs[run] = state
            bulk = self.bus.max_payload
            state.subs = [
                await self.subscribe(
                    subjects.grant(run, self.name),
                    GrantBatch,
                    lambda g: self._on_grant(state, g),
                    max_bytes=bulk,
                ),
                await self.subscribe(subjects.collect(run), Collect, lambda c: self._on_collect(state, c)),
            ]
            if state.fleet is not None and state.fleet.tracker is not None:
                state.subs.append(
                    await self.subscribe(
                        subjects.tokens(run, ANY),
                        TokenReport,
                        lambda r: self._on_tokens(state, r),
                        max_bytes=bulk,
                        sender=lambda r: r.service,
                    )
                )
        self.host_metrics.components.set(len(hosted))
        log.info(
            "%s: run %s: leading %s, following %s, acting for %s", self.name, run, leaders, followers, acting
        )
        # Subscriptions go to the server before Ready on this one connection, so every
        # grant sent after the conductor has our Ready finds them in place.
        await self.publish(ready_subject, ready)

    async def _drop(self, run: str) -> None:
        state = self.runs.pop(run, None)
        if state is None:
            return
        for sub in state.subs:
            await self.forget(sub)
        self.host_metrics.components.set(0)

    # -- grants and steps ----------------------------------------------------------------------

    async def _on_grant(self, state: HostedRun, grant: GrantBatch) -> None:
        if grant.run != state.run:
            raise Rejected("unknown_run", f"grant of run {grant.run!r} on the subject of run {state.run}")
        if grant.window < state.last.window:
            raise Rejected("stale", f"grant for window {grant.window}, already past {state.last.window}")
        stepped = grant.window > state.last.window
        if stepped:
            state.last = await self.stepper.step(state, grant)
        await self.publish(state.done_subject, self.stepper.answer(state, grant))
        fleet, last = state.fleet, state.last
        if stepped and not last.error and fleet is not None and fleet.due():
            # Let nats-py write the answer first: reading the instances' logs takes
            # milliseconds, which the run need not wait for.
            await asyncio.sleep(0)
            now = last.ahead[-1].time_s if last.ahead else grant.time_s
            await self._publish_tokens(state.run, fleet.observe(now))

    async def _on_collect(self, state: HostedRun, cmd: Collect) -> None:
        if cmd.to and self.name not in cmd.to:
            return
        if state.exported is None:
            state.exported = self._export(state, cmd)
            fleet = state.fleet
            if fleet is not None and not fleet.ended:
                try:
                    pieces = fleet.observe(cmd.end_s, final=True)
                except Exception:  # the results matter more than the metrics
                    log.exception("%s: run %s: the final fleet metrics failed", self.name, state.run)
                else:
                    await self._publish_tokens(state.run, pieces)
        for chunk in state.exported:
            await self.publish(subjects.export(cmd.run, self.name), chunk)

    def _export(self, state: HostedRun, cmd: Collect) -> list[Chunk]:
        """Finish every hosted component and export it (followers too: one may have been
        promoted; the conductor takes each component's export from its leader)."""
        parts: dict[str, Any] = {}
        error = ""
        try:
            for cid in sorted(state.comps):
                comp = state.comps[cid]
                comp.finish(cmd.end_s)
                parts[cid] = self.codec.raw(comp.export())
        except Exception as exc:
            log.exception("%s: export failed", self.name)
            parts, error = {}, f"{self.name}: export failed: {exc}"
        data = self.codec.encode(ExportBatch(cmd.run, self.name, parts, error))
        return chunks.split(self.name, data, self.bus.max_payload)

    # -- fleet metrics ---------------------------------------------------------------------------
    async def _on_tokens(self, state: HostedRun, report: TokenReport) -> None:
        if report.run != state.run:
            raise Rejected(
                "unknown_run", f"token report of run {report.run!r} on the subject of run {state.run}"
            )
        if state.fleet is not None:
            state.fleet.report(report.pieces)

    async def _publish_tokens(self, run: str, pieces: list[TokenPieces]) -> None:
        """Each instance's pieces, split in as many reports as the server's payload needs."""
        limit = self.bus.max_payload // 2
        todo = list(pieces)
        while todo:
            p = todo.pop(0)
            data = self.codec.encode(TokenReport(run, self.name, p))
            if len(data) <= limit or len(p.rid) < 2:
                await self.publish(subjects.tokens(run, self.name), data)
            else:
                todo[:0] = split_pieces(p)
