"""Disaggregated serving (Splitwise/DistServe-style): fixed prefill and decode pools.

The first ``prefill_instances`` instances only prefill, the others only decode. The balancer
picks one instance of each pool per request (the same routing rule within each pool). After the
prefill (which produces the first token) the KV moves to the decode instance over the
inter-instance link, either streamed layer by layer while the prefill runs (``layerwise``,
Splitwise's choice) or in one piece after it (``after_prefill``). The decode instance takes the
KV only when it has room for it (DistServe's pull): until then the prefill instance keeps it,
which throttles the prefill pool when decoding falls behind.
"""

from __future__ import annotations

from collections import deque
from typing import Any, ClassVar

from llmtwin.cluster.context import BALANCER, ClusterContext, instance_id
from llmtwin.cluster.engine import Engine
from llmtwin.cluster.engine_events import EngineEvent, Finished, Prefilled, Recompute
from llmtwin.cluster.faults import entries, lost_requests, recover_time
from llmtwin.cluster.messages import (
    Arrival,
    Dispatch,
    Done,
    InstanceDown,
    InstanceUp,
    KVAbandoned,
    KVLanded,
    KVRelease,
    KVTransfer,
    LostRequests,
    Preempted,
    PrefillDone,
    Redirect,
)
from llmtwin.cluster.policies.base import Agent, Param, Policy
from llmtwin.cluster.policies.routing import ROUTINGS, Router
from llmtwin.cluster.seqs import Held, Job, LostSeq, Role
from llmtwin.errors import ConfigurationError
from llmtwin.scenario.spec import FaultSpec
from llmtwin.sim.kernel import Outbox


class Disaggregated(Policy):
    """Prefill pool and decode pool, KV moved between them once per request."""

    name: ClassVar[str] = "disaggregated"
    PARAMS: ClassVar[dict[str, Param]] = {
        "prefill_instances": Param(
            0,
            "Instances in the prefill pool (the first ones); 0 = a third of the instances (at least "
            "one, and at least one left to decode).",
            low=0,
        ),
        "kv_transfer": Param(
            "layerwise",
            "layerwise: each layer's KV is sent as soon as the prefill computed it (overlapped); "
            "after_prefill: the whole KV is sent when the prefill ends.",
            ("layerwise", "after_prefill"),
        ),
        "routing": Param(
            "least_outstanding_tokens",
            "Routing within each pool: round_robin, least_outstanding_tokens or least_kv.",
            ROUTINGS,
        ),
    }
    SILENT: ClassVar[tuple[type, ...]] = (PrefillDone, Done)
    """A finished prefill or request only updates the pools' counts."""

    def __init__(self, params: dict[str, Any], ctx: ClusterContext) -> None:
        super().__init__(params, ctx)
        n = ctx.instances
        if n < 2:
            raise ConfigurationError("disaggregated serving needs at least 2 instances")
        p = self.params["prefill_instances"] or max(1, n // 3)
        if p >= n:
            raise ConfigurationError(
                f"disaggregated: prefill_instances = {p} leaves no decode instance out of {n}"
            )
        self.prefill_count = p
        self.prefill = Router(self.params["routing"], range(p))
        self.decode = Router(self.params["routing"], range(p, n))
        self._reqs: dict[int, Arrival] = {}
        self.where: dict[int, tuple[int, int]] = {}
        """Per request: its prefill and decode instances (a failure report from another is stale)."""
        self.parked: list[tuple[Arrival, int]] = []
        """Requests waiting for a prefill or a decode instance to come back."""
        self.parked_kv: list[tuple[int, int]] = []
        """(request, prefill instance holding its KV) waiting for a decode instance to come back."""

    def role(self, iid: int) -> Role:
        return Role.PREFILL if iid < self.prefill_count else Role.DECODE

    def on_arrival(self, now: float, a: Arrival, out: Outbox) -> None:
        self._reqs[a.rid] = a
        self._dispatch(now, a, 0, out)

    def _dispatch(self, now: float, a: Arrival, generated: int, out: Outbox) -> None:
        if not self.prefill.any_up() or not self.decode.any_up():
            self.parked.append((a, generated))
            return
        p = self.prefill.pick()
        d = self.decode.pick()
        prompt = a.prompt_tokens + generated
        self.prefill.assign(p, a.rid, prompt, self.ctx.blocks(prompt))
        self.decode.assign(d, a.rid, a.prompt_tokens + a.output_tokens, self.ctx.blocks(prompt))
        self.where[a.rid] = (p, d)
        body = Dispatch(a.rid, a.arrival_s, a.prompt_tokens, a.output_tokens, generated, kv_target=d)
        out.send(instance_id(p), now + self.ctx.routing_latency_s, body)

    def _redirect(self, now: float, rid: int, src: int, out: Outbox) -> None:
        """The KV of ``rid`` is intact on prefill instance ``src``: offer it to another decode instance."""
        if not self.decode.any_up():
            self.parked_kv.append((rid, src))
            return
        a = self._reqs[rid]
        d = self.decode.pick()
        self.decode.assign(d, rid, a.prompt_tokens + a.output_tokens, 0)
        self.where[rid] = (src, d)
        self.fault_log.redirect(rid)
        out.send(instance_id(src), now, Redirect(rid, d))

    def on_message(self, now: float, body: Any, out: Outbox) -> None:
        if isinstance(body, PrefillDone):
            self.prefill.finish(body.rid)
            self.prefill.report(body.instance, body.kv_used_blocks)
        elif isinstance(body, Done):
            self.prefill.finish(body.rid)
            self.decode.finish(body.rid)
            self.prefill.report(body.instance, body.kv_used_blocks)
            self.decode.report(body.instance, body.kv_used_blocks)
            del self._reqs[body.rid]
            self.where.pop(body.rid, None)
        elif isinstance(body, Preempted):
            # Out of KV on the decode instance: prefill again (prompt + tokens so far).
            self.decode.finish(body.rid)
            self._dispatch(now, self._reqs[body.rid], body.generated_tokens, out)
        elif isinstance(body, InstanceDown):
            self._set_down(body.instance, True)
            self.fault_log.affected(body.rids)
        elif isinstance(body, InstanceUp):
            self._set_down(body.instance, False)
            parked, self.parked = self.parked, []
            parked_kv, self.parked_kv = self.parked_kv, []
            for rid, src in parked_kv:
                self._lost(now, rid, 0, src, out)
            for a, generated in parked:
                self._dispatch(now, a, generated, out)
        elif isinstance(body, LostRequests):
            for e in entries(body):
                if body.instance in self.where.get(e.arrival.rid, ()):
                    self._lost(now, e.arrival.rid, e.kv_tokens, e.kv_at, out, e.generated)

    def _lost(
        self, now: float, rid: int, kv_tokens: int, kv_at: int, out: Outbox, generated: int = 0
    ) -> None:
        """Serve ``rid`` again: its intact KV to a new decode instance, or prefilled again."""
        self.decode.finish(rid)
        if kv_at >= 0 and kv_at not in self.prefill.down:
            self._redirect(now, rid, kv_at, out)
            return
        self.prefill.finish(rid)
        self.where.pop(rid, None)
        self.fault_log.recompute(rid, kv_tokens)
        self._dispatch(now, self._reqs[rid], generated, out)

    def _set_down(self, iid: int, down: bool) -> None:
        (self.prefill if iid < self.prefill_count else self.decode).set_down(iid, down)

    def agent(self, iid: int, engine: Engine) -> Agent:
        if iid < self.prefill_count:
            return PrefillAgent(iid, self.ctx, engine, self.params["kv_transfer"])
        return DecodeAgent(iid, self.ctx, engine)


class PrefillAgent(Agent):
    """Prefills, then offers the KV to the decode instance and holds it until released."""

    def __init__(self, iid: int, ctx: ClusterContext, engine: Engine, kv_transfer: str) -> None:
        super().__init__(iid, ctx, engine)
        self.layerwise = kv_transfer == "layerwise"
        self.target: dict[int, int] = {}
        self.offered: dict[int, int] = {}
        """Held KV offered to a decode instance and not released yet: its decode instance."""

    def on_event(self, now: float, ev: EngineEvent, out: Outbox) -> None:
        match ev:
            case Finished():  # a one-token request: nothing to decode
                self.target.pop(ev.rid, None)
                self.done(now, ev, out)
            case Prefilled():
                self._offer(now, ev, out)

    def _offer(self, now: float, ev: Prefilled, out: Outbox) -> None:
        """Tell the balancer, and offer the KV to the decode instance chosen at dispatch."""
        h = self.engine.held[ev.rid]
        d = self.target.pop(ev.rid)
        out.send(BALANCER, now, PrefillDone(ev.rid, self.iid, h.prompt, h.generated, self.engine.used))
        # Every request of the iteration streams over the same link: they land together.
        batch_bytes = self.ctx.kv_bytes(ev.batch_tokens)
        link = self.ctx.link
        if self.layerwise:
            lands = link.layerwise_landing(self.iid, d, batch_bytes, ev.start_s, now, self.ctx.layers)
        else:
            lands = now + link.time(self.iid, d, batch_bytes)
        self._send(out, now, h, d, lands)

    def _send(self, out: Outbox, now: float, h: Held, d: int, lands: float) -> None:
        self.offered[h.rid] = d
        body = KVTransfer(h.rid, self.iid, h.arrival_s, h.prompt, h.output, h.generated, h.kv_tokens, lands)
        out.send(instance_id(d), now, body)

    def on_message(self, now: float, body: Any, out: Outbox) -> None:
        if isinstance(body, Dispatch):
            self.target[body.rid] = body.kv_target
            self.engine.submit(
                Job(body.rid, body.arrival_s, body.prompt_tokens, body.output_tokens, body.generated_tokens)
            )
        elif isinstance(body, KVRelease):
            self.offered.pop(body.rid, None)
            self.engine.drop_held(body.rid)
        elif isinstance(body, Redirect):
            # The KV is at rest here: the whole of it crosses the link from now.
            h = self.engine.held[body.rid]
            lands = now + self.ctx.link.time(self.iid, body.target, self.ctx.kv_bytes(h.kv_tokens))
            self._send(out, now, h, body.target, lands)

    def on_down(
        self, now: float, fault: FaultSpec, lost: list[LostSeq], copies: list[int], out: Outbox
    ) -> None:
        """Queued prompts are lost; so is KV on its way to (or waiting for room at) a decode
        instance, which decides: what fully landed there by now survives."""
        out.send(BALANCER, now, InstanceDown(self.iid, recover_time(fault), [s.rid for s in lost]))
        gone: list[LostSeq] = []
        abandoned: dict[int, list[int]] = {}
        for s in lost:
            d = self.offered.get(s.rid)
            if d is None or self.ctx.down(d, now):
                gone.append(s)
            else:
                abandoned.setdefault(d, []).append(s.rid)
        if gone:
            out.send(BALANCER, now, lost_requests(self.iid, gone))
        for d, rids in sorted(abandoned.items()):
            out.send(instance_id(d), now, KVAbandoned(self.iid, rids))
        self.target, self.offered = {}, {}


class DecodeAgent(Agent):
    """Takes in KV when it has room (first come first served), decodes, reports."""

    def __init__(self, iid: int, ctx: ClusterContext, engine: Engine) -> None:
        super().__init__(iid, ctx, engine)
        self.pending: deque[KVTransfer] = deque()
        """Offers not taken yet for lack of room, in arrival order."""
        self.landing: dict[int, float] = {}
        """Taken, KV still crossing the link: when it lands."""

    def on_event(self, now: float, ev: EngineEvent, out: Outbox) -> None:
        match ev:
            case Finished():
                self.done(now, ev, out)
            case Recompute():  # the engine freed the KV; prefill it again elsewhere
                body = Preempted(ev.rid, self.iid, ev.arrival_s, ev.prompt, ev.output, ev.generated)
                out.send(BALANCER, now, body)
        self._take_pending(now, out)

    def on_message(self, now: float, body: Any, out: Outbox) -> None:
        if isinstance(body, KVTransfer):
            if self.pending or not self._take(now, body, body.lands_s, out):
                self.pending.append(body)
        elif isinstance(body, KVLanded):
            if self.landing.pop(body.rid, None) is not None:
                self.engine.resume(body.rid)
        elif isinstance(body, KVAbandoned):
            self._abandoned(now, body, out)

    def _take_pending(self, now: float, out: Outbox) -> None:
        while self.pending:
            x = self.pending[0]
            # Pulled now that there is room: the whole KV crosses the link after the prefill.
            lands = now + self.ctx.link.time(x.src, self.iid, self.ctx.kv_bytes(x.kv_tokens))
            if not self._take(now, x, lands, out):
                return
            self.pending.popleft()

    def _take(self, now: float, x: KVTransfer, lands: float, out: Outbox) -> bool:
        """Reserve the KV's blocks; it decodes from ``lands`` on, when the sender may free its copy."""
        h = Held(x.rid, x.arrival_s, x.prompt_tokens, x.output_tokens, x.generated_tokens)
        if not self.engine.hold(h):
            return False
        self.moved(x.rid, self.ctx.kv_bytes(x.kv_tokens))
        lands = max(now, lands)
        out.send(instance_id(x.src), lands, KVRelease(x.rid, x.src))
        if lands == now:
            self.engine.resume(x.rid)
        else:
            self.landing[x.rid] = lands
            out.send(instance_id(self.iid), lands, KVLanded(x.rid))
        return True

    def _abandoned(self, now: float, m: KVAbandoned, out: Outbox) -> None:
        """The sender failed: KV not fully landed by now is lost (prefilled again elsewhere)."""
        rids = set(m.rids)
        gone = [_seq(x) for x in self.pending if x.src == m.src and x.rid in rids]
        self.pending = deque(x for x in self.pending if not (x.src == m.src and x.rid in rids))
        for rid in m.rids:
            if self.landing.get(rid, -1.0) > now:
                del self.landing[rid]
                h = self.engine.drop_held(rid)
                gone.append(LostSeq(rid, h.arrival_s, h.prompt, h.output, h.generated, h.kv_tokens))
        if gone:
            out.send(BALANCER, now, lost_requests(self.iid, gone))

    def on_down(
        self, now: float, fault: FaultSpec, lost: list[LostSeq], copies: list[int], out: Outbox
    ) -> None:
        """What it held is lost; offers it had not taken yet are intact on their prefill instances."""
        waiting = list(self.pending)
        out.send(
            BALANCER,
            now,
            InstanceDown(self.iid, recover_time(fault), [s.rid for s in lost] + [x.rid for x in waiting]),
        )
        if lost:
            out.send(BALANCER, now, lost_requests(self.iid, lost))
        for src in sorted({x.src for x in waiting}):
            seqs = [_seq(x) for x in waiting if x.src == src]
            out.send(BALANCER, now, lost_requests(self.iid, seqs, kv_at=src))
        self.pending, self.landing = deque(), {}

    def bounce(self, now: float, body: Any, out: Outbox) -> None:
        if isinstance(body, KVTransfer):  # the KV is still on the prefill instance
            out.send(BALANCER, now, lost_requests(self.iid, [_seq(body)], kv_at=body.src))


def _seq(x: KVTransfer) -> LostSeq:
    return LostSeq(x.rid, x.arrival_s, x.prompt_tokens, x.output_tokens, x.generated_tokens, x.kv_tokens)
