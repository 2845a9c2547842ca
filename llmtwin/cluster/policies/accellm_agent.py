"""AcceLLM, instance side: roles, the pair's copies, eviction and rebuilds (hand-overs are in
``accellm_handover.py``, failures in ``accellm_faults.py``).

Words used below. A request of the pair is *owned* by the instance that decodes it (or would,
if paused); the owner's copy is the *primary*. The partner may hold a *redundant* copy (an
engine replica): then the request can move to the partner with no data transfer. A request
whose partner copy is gone is *pinned* to its owner until the copy is rebuilt.

Invariants kept here: a request decodes only on an instance whose engine holds its KV (it is
resumed only after ``hold``/``replica_to_held`` succeeded, and after the KV landed); a sender
keeps its primary until the receiver acknowledged a hand-over; eviction only ever touches
redundant copies (the engine's ``replicas``).

A prefill instance tells the balancer of every finished prompt (``PrefillDone``: the balancer's
view of its queue, for prefill-aware routing). No request waits for a prefill queue to drain
while the decoding partner holds a usable copy of it: a prefilling instance refuses hand-overs,
and hands its partner at the end of every step whatever it holds paused that the partner has a
copy of (``stuck_behind_prefill``).

When both instances of a pair may prefill (``max_prefill``), a prefill instance also tells its
partner of its role change (``RoleChanged``). While both prefill, an instance whose next prompt
does not fit its KV (even after evicting every copy) goes back to decoding, its prompts kept
queued, and takes the prefill role again once the prompt fits: otherwise two prefill instances
full of paused requests would wait for each other.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from llmtwin.cluster.context import BALANCER, ClusterContext, instance_id
from llmtwin.cluster.engine import Engine
from llmtwin.cluster.engine_events import (
    Drained,
    EngineEvent,
    Evicted,
    Finished,
    Prefilled,
    Recompute,
    Released,
)
from llmtwin.cluster.messages import (
    Dispatch,
    Handover,
    HandoverAck,
    InstanceUp,
    KVLanded,
    PartnerDone,
    PartnerDown,
    Preempted,
    PrefillDone,
    RebuildRequest,
    ReplicaDropped,
    RoleChanged,
    SwitchBack,
)
from llmtwin.cluster.policies import accellm_faults, accellm_handover
from llmtwin.cluster.policies.base import Agent
from llmtwin.cluster.seqs import Held, Job, LostSeq, Role
from llmtwin.scenario.spec import FaultSpec
from llmtwin.sim.kernel import Outbox


@dataclass(frozen=True, slots=True)
class AgentConfig:
    partner: int
    decode_split: str
    eager: bool
    rebuild_threshold: float
    handover_delay_s: float
    linger_s: float = 0.0
    prefill_batch_tokens: int = 0
    max_prefill: int = 1
    """Instances of the pair that may prefill at once (1 or 2)."""


class AcceLLMAgent(Agent):
    """Drives one instance of a pair."""

    def __init__(self, iid: int, ctx: ClusterContext, engine: Engine, cfg: AgentConfig) -> None:
        super().__init__(iid, ctx, engine)
        engine.report_drains()
        if cfg.prefill_batch_tokens:
            engine.cap_prefill_tokens(cfg.prefill_batch_tokens)
        self.cfg = cfg
        self.partner = instance_id(cfg.partner)
        self.reset()

    def reset(self) -> None:
        """The state of an instance that holds nothing (at the start, and back from a failure)."""
        self.epoch = 0
        """Bumped by every prompt, so a switch-back timer set before it is ignored."""
        self.role = Role.DECODE
        self.received = 0
        """Prompts dispatched to this instance so far."""
        self.notice = False
        """A role-change notice (back to decode) is due at the end of this step."""
        self.prefill_notice = False
        """A notice to the partner that this instance prefills is due (max_prefill > 1)."""
        self.partner_decodes = True
        """As last heard (max_prefill > 1): whether the partner is in the decode role."""
        self.partner_down = False
        """The partner failed and is not back (see ``accellm_faults.py``)."""
        self.peer: dict[int, float] = {}
        """Owned requests whose partner copy is usable from the given time."""
        self.synced: dict[int, int] = {}
        """Owned requests: tokens generated when the partner's copy was last brought up to date."""
        self.awaiting: set[int] = set()
        """Held here, handed to the partner, awaiting its acknowledgement."""
        self.landing: set[int] = set()
        """Taken over without a copy here: held until their KV has crossed the link."""
        self.final: dict[int, int] = {}
        """Redundant copies held here (and evicted ones): their requests' final KV tokens."""
        self.lost: set[int] = set()
        """Partner-owned requests whose copy this instance evicted (candidates for a rebuild)."""
        self._fresh: dict[float, list[Held]] = defaultdict(list)
        self.prompts: set[int] = set()
        """Dispatched here and not yet reported prefilled (the engine may already hold them)."""
        self.taken_t = -1.0
        self.taken: set[int] = set()
        """Requests taken over from the partner at ``taken_t`` (not handed straight back)."""
        self.refused_t = -1.0
        self.refused: set[int] = set()
        """Requests the partner refused at ``refused_t`` (not handed to it again at that instant:
        a hand-over and its refusal must not repeat forever at one virtual time)."""

    # -- helpers ------------------------------------------------------------------------------------
    def final_tokens(self, h: Held) -> int:
        return h.prompt + h.output - 1

    def _paused(self) -> list[int]:
        """Owned requests held here (not decoding), in rid order."""
        return sorted(
            r
            for r in self.engine.held
            if r not in self.awaiting and r not in self.landing and r not in self.prompts
        )

    def _has_copy(self, rid: int, now: float) -> bool:
        return self.peer.get(rid, math.inf) <= now

    def sync_bytes(self, rid: int, generated: int) -> float:
        """KV of the tokens made since the partner's copy was last brought up to date."""
        last = self.synced.pop(rid, generated)
        return self.ctx.kv_bytes(max(0, generated - last))

    # -- engine events ------------------------------------------------------------------------------
    def on_event(self, now: float, ev: EngineEvent, out: Outbox) -> None:
        match ev:
            case Finished():
                self.prompts.discard(ev.rid)
                self._finished(now, ev, out)
            case Prefilled():
                self.prompts.discard(ev.rid)
                self._prefilled(now, ev, out)
            case Released():
                accellm_handover.hand_over(self, now, list(ev.rids), out)
            case Evicted():
                # Taking a hand-over can evict the copy of a request later in the same hand-over,
                # which is then this instance's own (no longer a partner request to rebuild).
                self.lost.update(r for r in ev.rids if r in self.final)
                if not self.partner_down:
                    out.send(self.partner, now, ReplicaDropped(self.iid, list(ev.rids)))
            case Recompute():
                self.prompts.discard(ev.rid)
                body = Preempted(ev.rid, self.iid, ev.arrival_s, ev.prompt, ev.output, ev.generated)
                out.send(BALANCER, now, body)
                if self.peer.pop(ev.rid, None) is not None:
                    out.send(self.partner, now, PartnerDone(self.iid, [ev.rid]))
                self.synced.pop(ev.rid, None)
            case Drained():
                if self.cfg.linger_s > 0:
                    out.send(instance_id(self.iid), now + self.cfg.linger_s, SwitchBack(self.epoch))
                else:
                    self.become(Role.DECODE)

    def _finished(self, now: float, ev: Finished, out: Outbox) -> None:
        self.done(now, ev, out)
        if ev.rid in self.peer:
            del self.peer[ev.rid]
            if self.cfg.eager:
                self.moved(ev.rid, self.sync_bytes(ev.rid, ev.generated))
            out.send(self.partner, now, PartnerDone(self.iid, [ev.rid]))
        self.synced.pop(ev.rid, None)

    def _prefilled(self, now: float, ev: Prefilled, out: Outbox) -> None:
        """Stream the new KV to the partner layer by layer; it decodes the request once landed."""
        h = self.engine.held[ev.rid]
        if self.partner_down:  # no partner to stream to: it decodes here, without a copy
            if self.role == Role.DECODE:
                self.engine.resume(h.rid)
            out.send(BALANCER, now, PrefillDone(h.rid, self.iid, h.prompt, h.generated, self.engine.used))
            return
        lands = self.ctx.link.layerwise_landing(
            self.iid, self.cfg.partner, self.ctx.kv_bytes(ev.batch_tokens), ev.start_s, now, self.ctx.layers
        )
        self.moved(h.rid, self.ctx.kv_bytes(h.kv_tokens))
        self.awaiting.add(h.rid)
        self._fresh[lands].append(h)
        out.send(BALANCER, now, PrefillDone(h.rid, self.iid, h.prompt, h.generated, self.engine.used))

    # -- messages -------------------------------------------------------------------------------------
    def on_message(self, now: float, body: Any, out: Outbox) -> None:
        if isinstance(body, Dispatch):
            self.received += 1
            self.prompts.add(body.rid)
            # A recompute of a partner request whose copy this instance had evicted: no rebuild.
            self.lost.discard(body.rid)
            self.epoch += 1
            self.engine.submit(
                Job(body.rid, body.arrival_s, body.prompt_tokens, body.output_tokens, body.generated_tokens)
            )
            if self.role != Role.PREFILL and self._head_fits():
                self._start_prefill(now)
        elif isinstance(body, Handover):
            if not self.partner_down:  # sent before the partner failed: its KV never all came
                accellm_handover.take(self, now, body, out)
        elif isinstance(body, HandoverAck):
            accellm_handover.acked(self, now, body, out)
        elif isinstance(body, SwitchBack):
            if body.epoch == self.epoch and self.role == Role.PREFILL and not self.engine.waiting:
                self.become(Role.DECODE)
        elif isinstance(body, KVLanded):
            self.landing.discard(body.rid)
            if self.role == Role.DECODE:
                self.engine.resume(body.rid)
        elif isinstance(body, ReplicaDropped):
            for rid in body.rids:
                self.peer.pop(rid, None)
        elif isinstance(body, PartnerDone):
            for rid in body.rids:
                self.engine.drop_replica(rid)
                self.final.pop(rid, None)
                self.lost.discard(rid)
        elif isinstance(body, RebuildRequest):
            self._rebuild_for_partner(now, body.rids, out)
        elif isinstance(body, PartnerDown):
            accellm_faults.partner_failed(self, now, body, out)
        elif isinstance(body, InstanceUp):
            accellm_faults.partner_back(self, now, out)
        elif isinstance(body, RoleChanged):
            self.partner_decodes = body.role == Role.DECODE
            if body.role == Role.DECODE and self.role == Role.DECODE:
                self._rebalance(now, body.decode_seqs, body.decode_kv_tokens)

    def _rebuild_for_partner(self, now: float, rids: list[int], out: Outbox) -> None:
        """The partner reserved room for copies again: stream the KV of those still ours."""
        eng = self.engine
        gone = []
        for rid in rids:
            if rid in eng.running:
                gen = eng.generated(rid)
                tokens = eng.running[rid].prompt + gen - 1
            elif rid in eng.held and rid not in self.awaiting:
                gen = eng.held[rid].generated
                tokens = eng.held[rid].kv_tokens
            else:
                gone.append(rid)
                continue
            nbytes = self.ctx.kv_bytes(tokens)
            self.moved(rid, nbytes)
            self.peer[rid] = now + self.ctx.link.time(self.iid, self.cfg.partner, nbytes)
            self.synced[rid] = gen
        if gone:
            out.send(self.partner, now, PartnerDone(self.iid, gone))

    def _rebalance(self, now: float, partner_seqs: int, partner_tokens: int) -> None:
        """The partner decodes again: give it a share of the decodes it holds copies of."""
        eng = self.engine
        seqs, tokens = eng.decode_load()
        movable = [r for r in eng.running.values() if self._has_copy(r.rid, now)]
        chosen = []
        if self.cfg.decode_split == "count":
            movable.sort(key=lambda r: -r.serial)  # newest first: they have the most tokens to go
            chosen = [r.rid for r in movable[: max(0, (seqs - partner_seqs) // 2)]]
        else:
            gap = tokens - partner_tokens
            kv = eng.it
            for r in sorted(movable, key=lambda r: (-(r.a + kv), r.rid)):
                x = r.a + kv
                if 2 * x <= gap:
                    chosen.append(r.rid)
                    gap -= 2 * x
        if chosen:
            eng.release(chosen)

    # -- roles and step end -------------------------------------------------------------------------
    def _start_prefill(self, now: float) -> None:
        """Take the prefill role: decodes with a copy at the partner go there, the others pause."""
        movable = [r for r in self.engine.running if self._has_copy(r, now)]
        self.engine.release(movable)
        self.become(Role.PREFILL)

    def _head_fits(self) -> bool:
        """Whether the next queued prompt (chunk) would fit this KV, evicting every copy if need be."""
        eng = self.engine
        job = eng.waiting[0]
        remaining = job.total - job.done
        chunk = min(remaining, eng.max_tokens) if eng.chunked else remaining
        need = eng.blocks(job.done + chunk) - eng.blocks(job.done)
        floor = eng.watermark if job.done == 0 else 0
        return eng.free + eng.redundant - need >= floor

    def become(self, role: Role) -> None:
        self.engine.set_role(role)
        self.role = role
        if role == Role.DECODE:
            for rid in self._paused():
                self.engine.resume(rid)
        self.notice = role == Role.DECODE
        self.prefill_notice = role == Role.PREFILL and self.cfg.max_prefill > 1

    def end_step(self, now: float, out: Outbox) -> None:
        if self.engine.waiting:
            if self.role == Role.PREFILL and not self._head_fits() and not self.stuck_behind_prefill(now):
                # This KV is full and the partner takes nothing more now: decode to free it.
                self.become(Role.DECODE)
            elif self.role == Role.DECODE and self._head_fits():
                self._start_prefill(now)
        for lands in sorted(self._fresh):
            out.send(
                self.partner,
                lands,
                accellm_handover.handover_message(self.iid, self._fresh[lands], fresh=True),
            )
        self._fresh.clear()
        if self.notice:
            self.notice = False
            seqs, tokens = self.engine.decode_load()
            pinned = sum(1 for r in [*self.engine.running, *self._paused()] if r not in self.peer)
            # Prompts still queued here (the KV was full) keep it the pair's prefill instance.
            msg = RoleChanged(self.iid, Role.DECODE, self.received - len(self.prompts), seqs, tokens, pinned)
            out.send(BALANCER, now, msg)
            if not self.partner_down:
                out.send(self.partner, now, msg)
        if self.prefill_notice:
            self.prefill_notice = False
            if not self.partner_down:
                out.send(self.partner, now, RoleChanged(self.iid, Role.PREFILL, self.received, 0, 0, 0))
        movable = self.stuck_behind_prefill(now)
        if movable:
            # A resume asked for before (and not applied in the prefill role) no longer holds.
            self.engine.cancel_resume(set(movable))
            accellm_handover.hand_over(self, now, movable, out)
        self._maybe_rebuild(now, out)

    def stuck_behind_prefill(self, now: float) -> list[int]:
        """Requests held here that would wait for this prefill queue to drain although the
        decoding partner could decode them: those it holds a usable copy of (taken over just
        before this prefill began, their resume not yet applied; landed while prefilling; paused
        while both prefilled), and, when the next prompt does not fit this KV even after evicting
        every copy, the pinned ones too (their whole KV crosses the link): otherwise a prefill
        instance full of paused requests would wait for memory only their decoding frees. They go
        to the partner at the end of every step. Not those the partner refused at this very time,
        nor (with two prefill instances per pair) those it handed over at this very time: its
        role notice may still be on the way."""
        if self.role != Role.PREFILL or not self.partner_decodes:
            return []
        recent = self.taken if self.taken_t == now and self.cfg.max_prefill > 1 else set()
        refused = self.refused if self.refused_t == now else set()
        paused = [r for r in self._paused() if r not in recent and r not in refused]
        if self.engine.waiting and not self._head_fits():
            return paused
        return [r for r in paused if self._has_copy(r, now)]

    # -- faults (accellm_faults.py) --------------------------------------------------------------------
    def on_down(
        self, now: float, fault: FaultSpec, lost: list[LostSeq], copies: list[int], out: Outbox
    ) -> None:
        accellm_faults.went_down(self, now, fault, lost, out)

    def on_up(self, now: float, out: Outbox) -> None:
        accellm_faults.came_up(self, now, out)

    def bounce(self, now: float, body: Any, out: Outbox) -> None:
        if isinstance(body, Handover):
            accellm_faults.refuse(self, now, body, out)
        else:
            super().bounce(now, body, out)

    def _maybe_rebuild(self, now: float, out: Outbox) -> None:
        """Room again: reserve copies of partner requests this instance evicted and ask for them."""
        eng = self.engine
        if not self.lost or eng.free < self.cfg.rebuild_threshold * eng.capacity:
            return
        asked = []
        for rid in sorted(self.lost, key=lambda r: (self.final[r], r)):
            if eng.free - eng.blocks(self.final[rid]) < self.cfg.rebuild_threshold * eng.capacity:
                break
            if eng.add_replica(rid, self.final[rid]):
                asked.append(rid)
        for rid in asked:
            self.lost.discard(rid)
        if asked:
            out.send(self.partner, now, RebuildRequest(self.iid, asked))
