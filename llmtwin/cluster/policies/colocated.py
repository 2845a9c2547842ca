"""Colocated serving (vLLM-style): every instance batches new prefills with its running decodes.

The balancer routes each request to one instance (round robin, least outstanding tokens or
least KV use) and that instance does everything: prefill, decode, and recompute after a
preemption. No KV ever moves between instances. When an instance fails, the requests it held
are prefilled again (prompt plus the tokens already produced) on the instances that are up.
"""

from __future__ import annotations

from typing import Any, ClassVar

from llmtwin.cluster.context import ClusterContext, instance_id
from llmtwin.cluster.engine import Engine
from llmtwin.cluster.faults import entries
from llmtwin.cluster.messages import Arrival, Dispatch, Done, InstanceDown, InstanceUp, LostRequests
from llmtwin.cluster.policies.base import Agent, Param, Policy, SimpleAgent
from llmtwin.cluster.policies.routing import ROUTINGS, Router
from llmtwin.cluster.seqs import Job
from llmtwin.sim.kernel import Outbox


class Colocated(Policy):
    """Route each request to one instance that prefills and decodes it."""

    name: ClassVar[str] = "colocated"
    PARAMS: ClassVar[dict[str, Param]] = {
        "routing": Param(
            "least_outstanding_tokens",
            "Which instance gets a new request: round_robin, least_outstanding_tokens (prompt + "
            "requested output tokens not yet completed) or least_kv (KV blocks in use as last reported).",
            ROUTINGS,
        ),
    }

    SILENT: ClassVar[tuple[type, ...]] = (Done,)
    """A completion only updates the router's counts."""

    def __init__(self, params: dict[str, Any], ctx: ClusterContext) -> None:
        super().__init__(params, ctx)
        self.router = Router(self.params["routing"], range(ctx.instances))
        self.parked: list[tuple[Arrival, int]] = []
        """Requests waiting for an instance to come back (every one is down)."""

    def on_arrival(self, now: float, a: Arrival, out: Outbox) -> None:
        self._route(now, a, 0, out)

    def _route(self, now: float, a: Arrival, generated: int, out: Outbox) -> None:
        if not self.router.any_up():
            self.parked.append((a, generated))
            return
        i = self.router.pick()
        self.router.assign(i, a.rid, a.prompt_tokens + a.output_tokens, self.ctx.blocks(a.prompt_tokens))
        body = Dispatch(a.rid, a.arrival_s, a.prompt_tokens, a.output_tokens, generated)
        out.send(instance_id(i), now + self.ctx.routing_latency_s, body)

    def on_message(self, now: float, body: Any, out: Outbox) -> None:
        if isinstance(body, Done):
            self.router.finish(body.rid)
            self.router.report(body.instance, body.kv_used_blocks)
        elif isinstance(body, InstanceDown):
            self.router.set_down(body.instance, True)
            self.fault_log.affected(body.rids)
        elif isinstance(body, InstanceUp):
            self.router.set_down(body.instance, False)
            parked, self.parked = self.parked, []
            for a, generated in parked:
                self._route(now, a, generated, out)
        elif isinstance(body, LostRequests):
            # Prefilled again (prompt + tokens so far) on an instance that is up. A report from
            # an instance the request is no longer assigned to is stale (it was re-served).
            for e in entries(body):
                if self.router.owner(e.arrival.rid) != body.instance:
                    continue
                self.router.finish(e.arrival.rid)
                self.fault_log.recompute(e.arrival.rid, e.kv_tokens)
                self._route(now, e.arrival, e.generated, out)

    def agent(self, iid: int, engine: Engine) -> Agent:
        return ColocatedAgent(iid, self.ctx, engine)


class ColocatedAgent(SimpleAgent):
    """Queues dispatched prompts; the engine (``mixed`` role) does the rest."""

    def on_message(self, now: float, body: Any, out: Outbox) -> None:
        if isinstance(body, Dispatch):
            self.engine.submit(
                Job(body.rid, body.arrival_s, body.prompt_tokens, body.output_tokens, body.generated_tokens)
            )
