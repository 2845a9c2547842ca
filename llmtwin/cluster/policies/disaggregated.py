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
from llmtwin.cluster.messages import (
    Arrival,
    Dispatch,
    Done,
    KVLanded,
    KVRelease,
    KVTransfer,
    Preempted,
    PrefillDone,
)
from llmtwin.cluster.policies.base import Agent, Param, Policy
from llmtwin.cluster.policies.routing import ROUTINGS, Router
from llmtwin.cluster.seqs import Held, Job, Role
from llmtwin.errors import ConfigurationError
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

    def role(self, iid: int) -> Role:
        return Role.PREFILL if iid < self.prefill_count else Role.DECODE

    def on_arrival(self, now: float, a: Arrival, out: Outbox) -> None:
        self._reqs[a.rid] = a
        self._dispatch(now, a, 0, out)

    def _dispatch(self, now: float, a: Arrival, generated: int, out: Outbox) -> None:
        p = self.prefill.pick()
        d = self.decode.pick()
        prompt = a.prompt_tokens + generated
        self.prefill.assign(p, a.rid, prompt, self.ctx.blocks(prompt))
        self.decode.assign(d, a.rid, a.prompt_tokens + a.output_tokens, self.ctx.blocks(prompt))
        body = Dispatch(a.rid, a.arrival_s, a.prompt_tokens, a.output_tokens, generated, kv_target=d)
        out.send(instance_id(p), now + self.ctx.routing_latency_s, body)

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
        elif isinstance(body, Preempted):
            # Out of KV on the decode instance: prefill again (prompt + tokens so far).
            self.decode.finish(body.rid)
            self._dispatch(now, self._reqs[body.rid], body.generated_tokens, out)

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
        body = KVTransfer(h.rid, self.iid, h.arrival_s, h.prompt, h.output, h.generated, h.kv_tokens, lands)
        out.send(instance_id(d), now, body)

    def on_message(self, now: float, body: Any, out: Outbox) -> None:
        if isinstance(body, Dispatch):
            self.target[body.rid] = body.kv_target
            self.engine.submit(
                Job(body.rid, body.arrival_s, body.prompt_tokens, body.output_tokens, body.generated_tokens)
            )
        elif isinstance(body, KVRelease):
            self.engine.drop_held(body.rid)


class DecodeAgent(Agent):
    """Takes in KV when it has room (first come first served), decodes, reports."""

    def __init__(self, iid: int, ctx: ClusterContext, engine: Engine) -> None:
        super().__init__(iid, ctx, engine)
        self.pending: deque[KVTransfer] = deque()
        """Offers not taken yet for lack of room, in arrival order."""

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
            self.engine.resume(body.rid)

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
            out.send(instance_id(self.iid), lands, KVLanded(x.rid))
        return True
