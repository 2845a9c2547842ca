"""The three kinds of component of a cluster run: generator, balancer and instance.

Each follows the kernel contract (:class:`llmtwin.sim.kernel.Component`) strictly, so a run
gives the same results in one process and as services over NATS.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llmtwin.cluster.context import BALANCER, GENERATOR, ClusterContext, instance_id
from llmtwin.cluster.engine import Engine
from llmtwin.cluster.engine_state import EngineSnapshot
from llmtwin.cluster.faults import FaultSchedule
from llmtwin.cluster.messages import (
    Arrival,
    BalancerExport,
    Done,
    GeneratorExport,
    InstanceExport,
)
from llmtwin.cluster.policies.base import Agent, Policy
from llmtwin.scenario.spec import FaultSpec
from llmtwin.sim.kernel import INF, Component, Envelope
from llmtwin.workload.request import RequestSpec


class Generator(Component):
    """Sends one :class:`Arrival` per request to the balancer, stamped with its arrival time.

    Arrivals go out ``chunk`` at a time (future-stamped), so the generator itself steps once per
    chunk rather than once per request.
    """

    def __init__(self, requests: Sequence[RequestSpec], chunk: int = 512) -> None:
        super().__init__(GENERATOR)
        self.requests = sorted(requests, key=lambda r: (r.arrival_s, r.rid))
        self.chunk = max(1, chunk)
        self._sent = 0

    def next_time(self) -> float:
        return self.requests[self._sent].arrival_s if self._sent < len(self.requests) else INF

    def step(self, now: float, inbox: list[Envelope]) -> None:
        stop = min(len(self.requests), self._sent + self.chunk)
        for r in self.requests[self._sent : stop]:
            self.outbox.send(
                BALANCER, r.arrival_s, Arrival(r.rid, r.arrival_s, r.prompt_tokens, r.output_tokens)
            )
        self._sent = stop

    def export(self) -> GeneratorExport:
        rs = sorted(self.requests, key=lambda r: r.rid)
        return GeneratorExport(
            [r.rid for r in rs],
            [r.arrival_s for r in rs],
            [r.prompt_tokens for r in rs],
            [r.output_tokens for r in rs],
        )


class Balancer(Component):
    """Hosts the serving policy: fails requests that can never fit, routes the others."""

    def __init__(self, policy: Policy, ctx: ClusterContext) -> None:
        super().__init__(BALANCER)
        self.policy = policy
        self.ctx = ctx
        self.failed: list[tuple[int, str]] = []
        self.completed = 0
        self.dispatches = 0

    def next_time(self) -> float:
        return INF

    def silent_kinds(self) -> tuple[type, ...]:
        return self.policy.SILENT

    def step(self, now: float, inbox: list[Envelope]) -> None:
        out = self.outbox
        for env in inbox:
            body: Any = env.body
            if isinstance(body, Arrival):
                reason = self.ctx.fits(body.prompt_tokens, body.output_tokens)
                if reason is not None:
                    self.failed.append((body.rid, reason))
                    continue
                self.dispatches += 1
                self.policy.on_arrival(now, body, out)
            else:
                if isinstance(body, Done):
                    self.completed += 1
                self.policy.on_message(now, body, out)

    def export(self) -> BalancerExport:
        failed = sorted(self.failed)
        log = self.policy.fault_log
        return BalancerExport(
            [r for r, _ in failed],
            [m for _, m in failed],
            self.completed,
            self.dispatches,
            fault_rids=sorted(log.hit),
            recomputed_rids=sorted(log.recomputed),
            recomputed_kv_tokens=[log.recomputed[r] for r in sorted(log.recomputed)],
            redirected_rids=sorted(log.redirected),
        )


class Instance(Component):
    """One engine and its policy agent.

    The engine fast-forwards its own iterations; the instance reports as its next time only the
    next event others must hear about. After every step it snapshots the engine and *projects*
    it to that event; if a message arrives first, it goes back to the snapshot and advances only
    to the message's time, so the projection never decides an iteration the message could change.
    """

    def __init__(self, iid: int, engine: Engine, agent: Agent, devices: int) -> None:
        super().__init__(instance_id(iid))
        self.iid = iid
        self.engine = engine
        self.agent = agent
        self.devices = devices
        self._snap: EngineSnapshot | None = None
        self._next = 0.0
        self._emitted = 0
        self.steps = 0
        self.start_role = engine.role
        self.faults = FaultSchedule(agent.ctx.faults_of(iid))
        self._fault_t = self.faults.next_time()
        """The next down or up transition (inf: none; kept as a plain float, read every step)."""
        self.down = False

    def next_time(self) -> float:
        return self._next if self._next < self._fault_t else self._fault_t

    def step(self, now: float, inbox: list[Envelope]) -> None:
        eng = self.engine
        self.steps += 1
        if now >= self._fault_t:
            self._transitions(now)
        if self.down:
            for env in inbox:
                self.agent.bounce(now, env.body, self.outbox)
            return
        if inbox or now != self._next:
            if self._snap is not None:
                eng.restore(self._snap)
            eng.advance(now)
            eng.settle(now)
        self._handle_events(now)
        for env in inbox:
            self.agent.on_message(now, env.body, self.outbox)
        self.agent.end_step(now, self.outbox)
        self._snap = eng.snapshot()
        events = eng.events
        if self._emitted == len(events):
            eng.project()
        self._next = events[self._emitted].time if self._emitted < len(events) else INF

    def _handle_events(self, now: float) -> None:
        events = self.engine.events
        while self._emitted < len(events) and events[self._emitted].time <= now:
            ev = events[self._emitted]
            self._emitted += 1
            if ev.time < now:
                raise AssertionError(
                    f"{self.id}: event {type(ev).__name__} at {ev.time} handled late, at {now}"
                )
            self.agent.on_event(now, ev, self.outbox)

    def _transitions(self, now: float) -> None:
        for goes_down, fault in self.faults.due(now):
            if goes_down:
                self._fail(now, fault)
            else:
                self.engine.recover(now, self.start_role)
                self.down = False
                self._next = now
                self.agent.on_up(now, self.outbox)
        self._fault_t = self.faults.next_time()

    def _fail(self, now: float, fault: FaultSpec) -> None:
        """What ran to completion by ``now`` is reported as usual; then the memory is gone."""
        eng = self.engine
        if self._snap is not None:
            eng.restore(self._snap)
            self._snap = None
        eng.advance_to_failure(now)
        self._handle_events(now)
        lost, copies = eng.wipe(now)
        self._emitted = len(eng.events)
        self._next = INF
        self.down = True
        self.agent.on_down(now, fault, lost, copies, self.outbox)

    def committed(self) -> tuple[int, int, tuple[int, ...]] | None:
        """(prompts waiting, sequences held, log mark) as of the last step, not the projection
        (None before the first step): for observers, which read but never change the engine."""
        return None if self._snap is None else self.engine.snapshot_view(self._snap)

    def finish(self, now: float) -> None:
        """The run ended at ``now``. A projection that found no further event is the truth (no
        input will ever come); one cut short by the run's end is replaced by the iterations that
        start before ``now``."""
        if self._snap is not None and self._next < INF:
            self.engine.restore(self._snap)
            self.engine.advance(now)
        self._snap = None

    def export(self) -> InstanceExport:
        eng, log, agent = self.engine, self.engine.log, self.agent
        block_bytes = self.engine.B * self.agent.ctx.kv_bytes_per_token / self.devices
        rid, first, last = list(log.range_rid), list(log.range_first), list(log.range_last)
        for r in eng.running.values():  # a run cut short (``until``): its tokens so far
            if eng.it - 1 >= r.start_it:
                rid.append(r.rid)
                first.append(r.start_it)
                last.append(eng.it - 1)
        return InstanceExport(
            iid=self.iid,
            devices=self.devices,
            kv_capacity_blocks=eng.capacity,
            block_bytes=block_bytes,
            seg_anchor_it=list(log.seg_anchor_it),
            seg_anchor_t=list(log.seg_anchor_t),
            seg_dt=list(log.seg_dt),
            seg_it=list(log.seg_it),
            seg_k=list(log.seg_k),
            seg_decode=list(log.seg_decode),
            seg_prefill_seqs=list(log.seg_prefill_seqs),
            seg_prefill_tokens=list(log.seg_prefill_tokens),
            seg_role=list(log.seg_role),
            range_rid=rid,
            range_first=first,
            range_last=last,
            preempted_rids=list(log.preempted_rids),
            moved_rids=list(agent.moved_rids),
            moved_bytes=list(agent.moved_bytes),
            kv_t=list(log.kv_t),
            kv_primary_blocks=list(log.kv_primary),
            kv_redundant_blocks=list(log.kv_redundant),
            role_t=list(log.role_t),
            role=list(log.roles),
            chunk_rid=list(log.chunk_rid),
            chunk_it=list(log.chunk_it),
        )
