"""AcceLLM (arXiv 2411.05555): instances in pairs, dynamic roles, redundant KV copies.

Balancer side (the paper's Scheduling Manager). Instances ``2k`` and ``2k+1`` form pair ``k``
for the whole run. A new request goes to a pair (``pair_routing``) and, inside it, to the
instance that currently prefills for the pair; when none does, the balancer makes one of the two
the prefill instance (``prefill_choice``). That instance hands its decoding requests to its
partner (no data moves: the partner holds copies), prefills the pair's prompts in prefill-only
iterations, streams each prompt's KV to the partner layer by layer, and goes back to decoding as
soon as no prompt waits, taking a share of the pair's decodes back (``decode_split``).

The instance side (roles, copies, hand-overs, eviction, rebuilds) is in ``accellm_agent.py``;
every rule and its default's justification is in docs/policies.md.
"""

from __future__ import annotations

from typing import Any, ClassVar

from llmtwin.cluster.context import ClusterContext, instance_id
from llmtwin.cluster.engine import Engine
from llmtwin.cluster.policies.accellm_agent import AcceLLMAgent, AgentConfig
from llmtwin.cluster.policies.base import Agent, Param, Policy
from llmtwin.cluster.policies.routing import ROUTINGS, Router
from llmtwin.cluster.seqs import DECODE
from llmtwin.errors import ConfigurationError
from llmtwin.sim.kernel import Outbox
from proto.messages import Arrival, Dispatch, Done, Preempted, RoleChanged


class AcceLLM(Policy):
    """Pairs with dynamic prefill/decode roles and redundant KV (the balancer's half)."""

    name: ClassVar[str] = "accellm"
    PARAMS: ClassVar[dict[str, Param]] = {
        "pair_routing": Param(
            "least_outstanding_tokens",
            "Which pair gets a new request: round_robin, least_outstanding_tokens (prompt + requested "
            "output tokens not yet completed, summed over the pair) or least_kv (KV blocks in use).",
            ROUTINGS,
        ),
        "prefill_choice": Param(
            "least_loaded",
            "Which instance of a pair becomes its prefill instance when neither is: least_loaded (fewer "
            "requests pinned to it, then fewer KV blocks in use, then the lower index) or alternate.",
            ("least_loaded", "alternate"),
        ),
        "decode_split": Param(
            "kv_tokens",
            "How the pair's decodes are split when both decode: kv_tokens (equal KV read per step, "
            "which sets the step time) or count (equal numbers of sequences).",
            ("kv_tokens", "count"),
        ),
        "kv_sync": Param(
            "eager",
            "How the partner's copy follows decoding: eager (every new token's KV is sent as it is "
            "made, so hand-overs are free; a copy reserves the request's final size) or on_handover "
            "(copies stay as they were; a hand-over first sends the tokens made since).",
            ("eager", "on_handover"),
        ),
        "redundancy_evict_threshold": Param(
            0.10,
            "Free KV fraction below which an instance evicts redundant copies (largest first) "
            "before anything else; it also evicts them when a block is missing.",
            low=0.0,
            high=0.9,
        ),
        "rebuild_threshold": Param(
            0.20,
            "Free KV fraction above which an instance re-creates copies it evicted (hysteresis "
            "above the eviction threshold).",
            low=0.0,
            high=1.0,
        ),
        "prefill_linger_s": Param(
            0.0,
            "How long a prefill instance whose queue ran empty waits for another prompt before it "
            "goes back to decoding, seconds (0: at once).",
            low=0.0,
        ),
        "prefill_batch_tokens": Param(
            0,
            "Most prompt tokens in one prefill iteration (0: engine.max_batch_tokens).",
            low=0,
        ),
        "handover_delay_s": Param(
            0.0,
            "Fixed control delay of a hand-over (the data is already there), seconds.",
            low=0.0,
        ),
    }

    def __init__(self, params: dict[str, Any], ctx: ClusterContext) -> None:
        super().__init__(params, ctx)
        if ctx.instances < 2 or ctx.instances % 2:
            raise ConfigurationError(f"accellm pairs instances: it needs an even number, got {ctx.instances}")
        if self.params["rebuild_threshold"] < self.params["redundancy_evict_threshold"]:
            raise ConfigurationError("accellm: rebuild_threshold must be >= redundancy_evict_threshold")
        pairs = ctx.instances // 2
        self.router = Router(self.params["pair_routing"], range(pairs))
        self.prefiller: list[int | None] = [None] * pairs
        """The instance prefilling for each pair (None: neither)."""
        self.last_prefiller = [1] * pairs
        self.dispatched = [0] * ctx.instances
        self.pinned = [0] * ctx.instances
        self.used = [0] * ctx.instances
        self._reqs: dict[int, Arrival] = {}

    def role(self, iid: int) -> str:
        return DECODE

    def evict_threshold(self) -> float:
        return float(self.params["redundancy_evict_threshold"])

    def on_arrival(self, now: float, a: Arrival, out: Outbox) -> None:
        self._reqs[a.rid] = a
        k = self.router.pick()
        self.router.assign(k, a.rid, a.prompt_tokens + a.output_tokens, self.ctx.blocks(a.prompt_tokens))
        self._dispatch(now, k, a, 0, out)

    def _dispatch(self, now: float, k: int, a: Arrival, generated: int, out: Outbox) -> None:
        p = self.prefiller[k]
        if p is None:
            p = self.prefiller[k] = self._choose(k)
        self.dispatched[p] += 1
        body = Dispatch(a.rid, a.arrival_s, a.prompt_tokens, a.output_tokens, generated)
        out.send(instance_id(p), now + self.ctx.routing_latency_s, body)

    def _choose(self, k: int) -> int:
        x, y = 2 * k, 2 * k + 1
        if self.params["prefill_choice"] == "alternate":
            choice = x if self.last_prefiller[k] == y else y
        else:
            choice = min((x, y), key=lambda i: (self.pinned[i], self.used[i], i))
        self.last_prefiller[k] = choice
        return choice

    def on_message(self, now: float, body: Any, out: Outbox) -> None:
        if isinstance(body, Done):
            self.router.finish(body.rid)
            self.used[body.instance] = body.kv_used_blocks
            self.router.report(
                body.instance // 2, self.used[body.instance & ~1] + self.used[body.instance | 1]
            )
            del self._reqs[body.rid]
        elif isinstance(body, RoleChanged):
            i = body.instance
            self.pinned[i] = body.pinned
            # Back to decoding with every prompt sent to it done: the pair has no prefill instance.
            if body.role == DECODE and self.prefiller[i // 2] == i and body.prefilled == self.dispatched[i]:
                self.prefiller[i // 2] = None
        elif isinstance(body, Preempted):
            # Recompute inside the same pair (its prefill instance prefills prompt + tokens so far).
            self._dispatch(now, body.instance // 2, self._reqs[body.rid], body.generated_tokens, out)

    def agent(self, iid: int, engine: Engine) -> Agent:
        cfg = AgentConfig(
            partner=iid ^ 1,
            decode_split=self.params["decode_split"],
            eager=self.params["kv_sync"] == "eager",
            rebuild_threshold=self.params["rebuild_threshold"],
            handover_delay_s=self.params["handover_delay_s"],
            linger_s=self.params["prefill_linger_s"],
            prefill_batch_tokens=self.params["prefill_batch_tokens"],
        )
        return AcceLLMAgent(iid, self.ctx, engine, cfg)
