"""AcceLLM (arXiv 2411.05555): instances in pairs, dynamic roles, redundant KV copies.

Balancer side (the paper's Scheduling Manager). Instances ``2k`` and ``2k+1`` form pair ``k``
for the whole run. A new request goes to a pair (``pair_routing``, by default the pair whose
prefill side is idle, else the one with the fewest queued prompt tokens) and, inside it, to the
instance that currently prefills for the pair; when none does, the balancer makes one of the two
the prefill instance (``prefill_choice``). That instance hands its decoding requests to its
partner (no data moves: the partner holds copies), prefills the pair's prompts in prefill-only
iterations, streams each prompt's KV to the partner layer by layer, and goes back to decoding as
soon as no prompt waits, taking a share of the pair's decodes back (``decode_split``).

With ``max_prefill_per_pair = 2`` the partner also takes the prefill role while the first prefill
instance has at least ``second_prefill_queue_tokens`` prompt tokens queued (dispatched and not yet
prefilled, known from ``PrefillDone``): the pair's decodes then pause until one of the two drains.

The instance side (roles, copies, hand-overs, eviction, rebuilds) is in ``accellm_agent.py``;
every rule and its default's justification is in docs/policies.md.
"""

from __future__ import annotations

from typing import Any, ClassVar

from llmtwin.cluster.context import ClusterContext, instance_id
from llmtwin.cluster.engine import Engine
from llmtwin.cluster.faults import entries
from llmtwin.cluster.messages import (
    Arrival,
    Dispatch,
    Done,
    InstanceDown,
    InstanceUp,
    LostRequests,
    Preempted,
    PrefillDone,
    RoleChanged,
)
from llmtwin.cluster.policies.accellm_agent import AcceLLMAgent, AgentConfig
from llmtwin.cluster.policies.base import Agent, Param, Policy
from llmtwin.cluster.policies.routing import ROUTINGS, Router
from llmtwin.cluster.seqs import Role
from llmtwin.errors import ConfigurationError
from llmtwin.sim.kernel import Outbox

PREFILL_AWARE = "prefill_aware"
"""Pair routing that sees each pair's queued prompt tokens (AcceLLM only)."""


class AcceLLM(Policy):
    """Pairs with dynamic prefill/decode roles and redundant KV (the balancer's half)."""

    name: ClassVar[str] = "accellm"
    PARAMS: ClassVar[dict[str, Param]] = {
        "pair_routing": Param(
            "prefill_aware",
            "Which pair gets a new request: prefill_aware (among pairs with no prompt queued or being "
            "prefilled, least outstanding tokens; if none, the fewest queued prompt tokens), "
            "round_robin, least_outstanding_tokens (prompt + requested output tokens not yet "
            "completed, summed over the pair) or least_kv (KV blocks in use).",
            (PREFILL_AWARE, *ROUTINGS),
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
        "max_prefill_per_pair": Param(
            1,
            "How many instances of a pair may prefill at once: 1 (the other always decodes) or 2 "
            "(under a prompt queue both prefill and the pair's decodes pause).",
            low=1,
            high=2,
        ),
        "second_prefill_queue_tokens": Param(
            0,
            "With max_prefill_per_pair = 2: prompt tokens queued at the pair's prefill instance "
            "(dispatched, not yet prefilled) at or above which a new prompt goes to the partner, "
            "which then prefills too (0: the prefill batch, prefill_batch_tokens or "
            "engine.max_batch_tokens).",
            low=0,
        ),
        "handover_delay_s": Param(
            0.0,
            "Fixed control delay of a hand-over (the data is already there), seconds.",
            low=0.0,
        ),
    }
    SILENT: ClassVar[tuple[type, ...]] = (Done, PrefillDone, RoleChanged)
    """Completions, finished prefills and role changes only update the pairs' counts."""

    def __init__(self, params: dict[str, Any], ctx: ClusterContext) -> None:
        super().__init__(params, ctx)
        if ctx.instances < 2 or ctx.instances % 2:
            raise ConfigurationError(f"accellm pairs instances: it needs an even number, got {ctx.instances}")
        if self.params["rebuild_threshold"] < self.params["redundancy_evict_threshold"]:
            raise ConfigurationError("accellm: rebuild_threshold must be >= redundancy_evict_threshold")
        pairs = ctx.instances // 2
        self.prefill_aware = self.params["pair_routing"] == PREFILL_AWARE
        rule = "least_outstanding_tokens" if self.prefill_aware else self.params["pair_routing"]
        self.router = Router(rule, range(pairs))
        """Outstanding tokens per pair (and the pick of every rule but prefill_aware)."""
        self.prefillers: list[list[int]] = [[] for _ in range(pairs)]
        """The instances prefilling for each pair, the first one first (at most max_prefill_per_pair)."""
        self.max_prefill = int(self.params["max_prefill_per_pair"])
        self.trigger = (
            self.params["second_prefill_queue_tokens"]
            or self.params["prefill_batch_tokens"]
            or ctx.engine.max_batch_tokens
        )
        self.queued = [0] * ctx.instances
        """Prompt tokens dispatched to each instance and not yet prefilled (``PrefillDone``)."""
        self._queued_rid: dict[int, tuple[int, int]] = {}
        self.last_prefiller = [1] * pairs
        self.dispatched = [0] * ctx.instances
        self.pinned = [0] * ctx.instances
        self.used = [0] * ctx.instances
        self._reqs: dict[int, Arrival] = {}
        self.down: set[int] = set()
        """Failed instances (their pairs take no new request while a healthy pair exists)."""
        self.parked: list[tuple[Arrival, int]] = []
        """Requests waiting for an instance to come back (every one is down)."""

    def role(self, iid: int) -> Role:
        return Role.DECODE

    def evict_threshold(self) -> float:
        return float(self.params["redundancy_evict_threshold"])

    def on_arrival(self, now: float, a: Arrival, out: Outbox) -> None:
        self._reqs[a.rid] = a
        self._route(now, a, 0, out)

    def _route(self, now: float, a: Arrival, generated: int, out: Outbox) -> None:
        k = self._pick_pair()
        if k is None:
            self.parked.append((a, generated))
            return
        self.router.assign(k, a.rid, a.prompt_tokens + a.output_tokens, self.ctx.blocks(a.prompt_tokens))
        self._dispatch(now, k, a, generated, out)

    def _dispatch(self, now: float, k: int, a: Arrival, generated: int, out: Outbox) -> None:
        p = self._target(k)
        self.dispatched[p] += 1
        tokens = a.prompt_tokens + generated
        self.queued[p] += tokens
        self._queued_rid[a.rid] = (p, tokens)
        body = Dispatch(a.rid, a.arrival_s, a.prompt_tokens, a.output_tokens, generated)
        out.send(instance_id(p), now + self.ctx.routing_latency_s, body)

    def _pick_pair(self) -> int | None:
        """The pair for a new request among the healthy ones (the router's ``down`` holds the pairs
        with a failed instance); if none is healthy, the least loaded pair with an instance up;
        None if every instance is down."""
        load = self.router.outstanding
        if not self.router.any_up():
            alive = [k for k in range(len(self.prefillers)) if not {2 * k, 2 * k + 1} <= self.down]
            return min(alive, key=lambda k: (load[k], k)) if alive else None
        if not self.prefill_aware:
            return self.router.pick()
        up = [k for k in range(len(self.prefillers)) if k not in self.router.down]
        queued = {k: self.queued[2 * k] + self.queued[2 * k + 1] for k in up}
        idle = [k for k in up if queued[k] == 0]
        if idle:
            return min(idle, key=lambda k: (load[k], k))
        return min(up, key=lambda k: (queued[k], load[k], k))

    def _target(self, k: int) -> int:
        """The instance of pair ``k`` that prefills the next prompt (made a prefill instance if needed)."""
        ps = self.prefillers[k]
        if not ps:
            ps.append(self._choose(k))
            return ps[0]
        first = ps[0]
        if self.max_prefill == 1 or self.queued[first] < self.trigger or first ^ 1 in self.down:
            return first
        if len(ps) == 1:
            # A full prefill batch already waits there: the partner prefills too (its decodes pause).
            ps.append(first ^ 1)
            return first ^ 1
        return min(ps, key=lambda i: (self.queued[i], ps.index(i)))

    def _unqueue(self, rid: int) -> None:
        got = self._queued_rid.pop(rid, None)
        if got is not None:
            self.queued[got[0]] -= got[1]

    def _choose(self, k: int) -> int:
        x, y = 2 * k, 2 * k + 1
        if x in self.down or y in self.down:
            choice = y if x in self.down else x
        elif self.params["prefill_choice"] == "alternate":
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
            self._unqueue(body.rid)  # a one-token request completes at its prefill
        elif isinstance(body, PrefillDone):
            self._unqueue(body.rid)
        elif isinstance(body, RoleChanged):
            i = body.instance
            self.pinned[i] = body.pinned
            # Back to decoding with every prompt sent to it done: it no longer prefills for the pair.
            ps = self.prefillers[i // 2]
            if body.role == Role.DECODE and i in ps and body.prefilled == self.dispatched[i]:
                ps.remove(i)
        elif isinstance(body, InstanceDown | InstanceUp | LostRequests):
            self._fault_message(now, body, out)
        elif isinstance(body, Preempted):
            # Recompute inside the same pair (its prefill instance prefills prompt + tokens so far),
            # unless a failure left it one instance while a healthy pair exists.
            k = body.instance // 2
            if k in self.router.down and self.router.any_up():
                self.router.finish(body.rid)
                self._route(now, self._reqs[body.rid], body.generated_tokens, out)
            else:
                self._dispatch(now, k, self._reqs[body.rid], body.generated_tokens, out)

    def _fault_message(self, now: float, body: InstanceDown | InstanceUp | LostRequests, out: Outbox) -> None:
        if isinstance(body, InstanceDown):
            i = body.instance
            self.fault_log.affected(body.rids)
            self.down.add(i)
            self.router.set_down(i // 2, True)
            # Its queue is gone (its partner, or the instance itself, reports what it held).
            self.prefillers[i // 2] = [p for p in self.prefillers[i // 2] if p != i]
            self.queued[i] = self.dispatched[i] = self.pinned[i] = self.used[i] = 0
            for rid in [r for r, (p, _) in self._queued_rid.items() if p == i]:
                del self._queued_rid[rid]
        elif isinstance(body, InstanceUp):
            i = body.instance
            self.down.discard(i)
            if i ^ 1 not in self.down:
                self.router.set_down(i // 2, False)
            parked, self.parked = self.parked, []
            for a, generated in parked:
                self._route(now, a, generated, out)
        else:
            # Served again by a healthy pair; a report from a pair the request left is stale.
            for e in entries(body):
                rid = e.arrival.rid
                if self.router.owner(rid) != body.instance // 2:
                    continue
                # Still counted as dispatched to the instance that dropped it, as that instance
                # counts it as received: its next RoleChanged matches them up.
                self._unqueue(rid)
                self.router.finish(rid)
                self.fault_log.recompute(rid, e.kv_tokens)
                self._route(now, self._reqs[rid], e.generated, out)

    def agent(self, iid: int, engine: Engine) -> Agent:
        cfg = AgentConfig(
            partner=iid ^ 1,
            decode_split=self.params["decode_split"],
            eager=self.params["kv_sync"] == "eager",
            rebuild_threshold=self.params["rebuild_threshold"],
            handover_delay_s=self.params["handover_delay_s"],
            linger_s=self.params["prefill_linger_s"],
            prefill_batch_tokens=self.params["prefill_batch_tokens"],
            max_prefill=self.max_prefill,
        )
        return AcceLLMAgent(iid, self.ctx, engine, cfg)
