"""A service that hosts components: the generator, balancer and device services.

Per run it builds every component (deterministically, like every other process), keeps the
ones its :class:`~services.selection.Selector` picks, answers ``Ready`` with the digests of
what it built, and then only reacts:

* a ``GrantBatch`` (window w, time T) brings the envelopes for its components produced since
  its last grant, lists its components to step and, for each, how many envelopes stamped <= T
  it must hold. It hands exactly those to ``step``, sorted by the envelope key (arrival order
  is never used), and answers one ``DoneBatch`` for the whole grant with what the steps sent
  (the conductor relays it to the receivers' hosts). Anything that goes wrong after the grant
  is understood becomes an error ``DoneBatch``, so the conductor never waits for an answer
  that will not come;
* ``Collect`` finishes its components and sends their exports to the conductor.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

from llmtwin.errors import ProtocolError, TwinError
from llmtwin.sim.kernel import Component, Envelope
from llmtwin.sim.mailbox import Mailbox
from proto import chunks, subjects
from proto.control import (
    Collect,
    DoneBatch,
    DoneItem,
    ExportBatch,
    GrantBatch,
    Ready,
    RunConfig,
    RunEnd,
    WireEnvelope,
)
from services.base import Rejected, Service
from services.bus import Subscription
from services.config import HostConfig
from services.factory import code_digest
from services.metrics import HostMetrics
from services.planner import RemotePlanProvider

log = logging.getLogger(__name__)


@dataclass(slots=True)
class HostedRun:
    """What a host keeps for one run."""

    run: str
    comps: dict[str, Component]
    followers: set[str]
    offload: set[str]
    """Components stepped in a worker thread (their steps may block on the planner service)."""
    mail: dict[str, Mailbox] = field(default_factory=dict)
    """Per component: envelopes not yet handed to a step."""
    subs: list[Subscription] = field(default_factory=list)
    done_subject: str = ""
    counters: list[Any] = field(default_factory=list)
    """Hosted components that count completed requests (``completed``: the balancer)."""


class HostService(Service[HostConfig]):
    """Hosts the components its selector picks, for whatever run the conductor configures."""

    def setup(self) -> None:
        self.selector = self.cfg.selector()
        self.host_metrics = HostMetrics(self.registry)
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
        if cmd.run in self.runs or cmd.run in self._configuring:
            return  # RunConfig is re-broadcast for late joiners: idempotent per run id
        self._configuring.add(cmd.run)
        try:
            await self._configure(cmd)
        finally:
            self._configuring.discard(cmd.run)

    async def _configure(self, cfg: RunConfig) -> None:
        run, spec = cfg.run, cfg.spec
        try:
            factory = self.factories.get(spec.factory)
            if factory is None:
                raise ProtocolError(f"unknown component factory {spec.factory!r}")
            provider = (
                RemotePlanProvider(
                    self.bus, self.codec, asyncio.get_running_loop(), spec, self.cfg.plan_timeout_s
                )
                if factory.needs_planner(spec)
                else None
            )
            built = factory.build(spec, provider)
            digest = factory.digest(spec)
            hosted = {c.id: c for c in built if self.selector.role(c.id) is not None}
            offload = {cid for cid in hosted if factory.may_block(spec, cid)}
        except TwinError as exc:
            log.error("%s: cannot build run %s: %s", self.name, run, exc)
            await self.publish(subjects.ready(run), Ready(run, self.name, [], error=f"{self.name}: {exc}"))
            return
        followers = {cid for cid in hosted if self.selector.role(cid) == "follower"}
        state = HostedRun(run, hosted, followers, offload, done_subject=subjects.done(run))
        state.counters = [c for c in hosted.values() if isinstance(getattr(c, "completed", None), int)]
        if hosted:
            self.runs[run] = state
            state.mail = {cid: Mailbox() for cid in hosted}
            state.subs = [
                await self.subscribe(
                    subjects.grant(run, self.name), GrantBatch, lambda g: self._on_grant(state, g)
                ),
                await self.subscribe(subjects.collect(run), Collect, lambda c: self._on_collect(state, c)),
            ]
        self.host_metrics.components.set(len(hosted))
        leaders = sorted(c for c in hosted if c not in followers)
        log.info("%s: run %s: leading %s, following %s", self.name, run, leaders, sorted(followers))
        # Subscriptions go to the server before Ready on this one connection, so every
        # grant sent after the conductor has our Ready finds them in place.
        ready = Ready(run, self.name, leaders, sorted(followers), "", digest, code_digest())
        await self.publish(subjects.ready(run), ready)

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
        items: list[DoneItem] = []
        out: list[WireEnvelope] = []
        try:
            self._file(state, grant)
            for cid, expect in zip(grant.components, grant.expect, strict=True):
                inbox = self._inputs(state, grant, cid, expect)
                comp = state.comps[cid]
                t0 = time.perf_counter()
                if cid in state.offload:  # may block on the planner: keep the loop free
                    await asyncio.to_thread(comp.step, grant.time_s, inbox)
                else:
                    comp.step(grant.time_s, inbox)
                self.host_metrics.step_duration.observe(time.perf_counter() - t0)
                self.host_metrics.steps.inc()
                items.append(self._sent(state, cid, out))
        except Exception as exc:  # anything after the grant is understood: an error DoneBatch
            if not isinstance(exc, TwinError):
                log.error("%s: step failed in window %d", self.name, grant.window, exc_info=exc)
            error = DoneBatch(grant.run, grant.window, self.name, [], error=f"{self.name}: {exc}")
            await self.publish(state.done_subject, error)
            return
        completed = sum(c.completed for c in state.counters) if state.counters else -1
        done = DoneBatch(grant.run, grant.window, self.name, items, completed=completed, envelopes=out)
        await self.publish(state.done_subject, done)

    def _file(self, state: HostedRun, grant: GrantBatch) -> None:
        """Check the grant; put relayed envelopes (produced in earlier windows) in their mailboxes."""
        if len(grant.components) != len(grant.expect):
            raise ProtocolError("GrantBatch with components and expect of different lengths")
        for item in grant.envelopes:
            box = state.mail.get(item.dst)
            if box is None:
                raise ProtocolError(f"relayed envelope for {item.dst!r}, which {self.name} does not host")
            box.add(self.codec.from_wire(item))
        if grant.envelopes:
            self.host_metrics.envelopes_in.inc(len(grant.envelopes))

    def _inputs(self, state: HostedRun, grant: GrantBatch, cid: str, expect: int) -> list[Envelope]:
        """The ``expect`` envelopes stamped <= the grant's time, in handling order (every one
        came with this grant or an earlier one)."""
        box = state.mail.get(cid)
        if box is None:
            raise ProtocolError(f"grant for {cid!r}, which {self.name} does not host")
        inbox = box.take(grant.time_s)
        if len(inbox) != expect:
            raise ProtocolError(
                f"{cid} holds {len(inbox)} messages for window {grant.window}, the conductor counted {expect}"
            )
        return inbox

    def _sent(self, state: HostedRun, cid: str, out: list[WireEnvelope]) -> DoneItem:
        """What a step sent, appended to ``out`` (leaders only); its DoneItem with a digest that
        a follower's copy must match."""
        comp = state.comps[cid]
        sent = comp.outbox.drain()
        wires = [self.codec.to_wire(e) for e in sent]
        digest = zlib.crc32(self.codec.encode(wires)) if wires else 0
        if cid not in state.followers:
            out.extend(wires)
            if sent:
                self.host_metrics.envelopes_out.inc(len(sent))
        return DoneItem(cid, comp.next_time(), [e.dst for e in sent], [e.time for e in sent], digest)

    async def _on_collect(self, state: HostedRun, cmd: Collect) -> None:
        parts: dict[str, Any] = {}
        error = ""
        try:
            for cid in sorted(state.comps):
                comp = state.comps[cid]
                comp.finish(cmd.end_s)
                if cid not in state.followers:
                    parts[cid] = self.codec.raw(comp.export())
        except Exception as exc:
            log.exception("%s: export failed", self.name)
            parts, error = {}, f"{self.name}: export failed: {exc}"
        data = self.codec.encode(ExportBatch(cmd.run, self.name, parts, error))
        for chunk in chunks.split(self.name, data, self.bus.max_payload):
            await self.publish(subjects.export(cmd.run), chunk)
