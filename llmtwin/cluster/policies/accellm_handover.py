"""AcceLLM hand-overs: a request moves to the partner, which takes it or refuses it.

The sender stops decoding the requests (engine ``release``) and sends ``Handover`` once the
partner's copy is current (at once with eager sync; after the tokens made since the last sync
crossed the link with sync on hand-over; for a just-prefilled request, when its KV has streamed
over). The receiver takes each request it can (from its copy, or by allocating room and waiting
for the whole KV when it has none), refuses them all while it prefills, and acknowledges; the
sender keeps its primary until then, and afterwards keeps it as the redundant copy if it has room.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmtwin.cluster.context import instance_id
from llmtwin.cluster.messages import Handover, HandoverAck, KVLanded, ReplicaDropped
from llmtwin.cluster.seqs import Held, Role
from llmtwin.sim.kernel import Outbox

if TYPE_CHECKING:
    from llmtwin.cluster.policies.accellm_agent import AcceLLMAgent


def hand_over(agent: AcceLLMAgent, now: float, rids: list[int], out: Outbox) -> None:
    """Send released requests to the partner (its copy is current once the delta crossed)."""
    held = [agent.engine.held[r] for r in rids]
    delta = 0.0
    for h in held:
        nbytes = agent.sync_bytes(h.rid, h.generated) if h.rid in agent.peer else 0.0
        agent.moved(h.rid, nbytes)
        delta += nbytes
        agent.peer.pop(h.rid, None)
        agent.synced.pop(h.rid, None)
        agent.awaiting.add(h.rid)
    # Eager sync streamed those bytes as the tokens were made; on hand-over they go now.
    wait = 0.0 if agent.cfg.eager else agent.ctx.link.time(agent.iid, agent.cfg.partner, delta)
    out.send(
        agent.partner, now + agent.cfg.handover_delay_s + wait, handover_message(agent.iid, held, fresh=False)
    )


def take(agent: AcceLLMAgent, now: float, m: Handover, out: Outbox) -> None:
    """Take over requests the partner hands over, unless this instance prefills: then they
    would wait here for its queue to drain, so the sender keeps them (and decodes them if it
    decodes); a fresh prompt's KV that landed here stays as the redundant copy."""
    eng = agent.engine
    taken, kept = [], []
    for i, rid in enumerate(m.rids):
        h = Held(rid, m.arrival_s[i], m.prompt_tokens[i], m.output_tokens[i], m.generated_tokens[i])
        lands = now
        if agent.role == Role.PREFILL:
            ok = False
            agent.lost.discard(rid)
            if m.fresh and eng.add_replica(rid, agent.final_tokens(h) if agent.cfg.eager else h.kv_tokens):
                agent.final[rid] = agent.final_tokens(h)
        elif rid in eng.replicas:
            ok = eng.replica_to_held(h)
        else:
            ok = eng.hold(h)
            if ok and not m.fresh:  # no copy here: the whole KV must come over first
                nbytes = agent.ctx.kv_bytes(h.kv_tokens)
                agent.moved(rid, nbytes)
                lands = now + agent.ctx.link.time(m.src, agent.iid, nbytes)
        taken.append(ok)
        kept.append(not ok and rid in eng.replicas)
        if not ok:
            continue
        agent.final.pop(rid, None)
        agent.lost.discard(rid)
        agent.peer[rid] = now  # the sender keeps a copy unless it says otherwise
        agent.synced[rid] = h.generated
        if lands > now:
            agent.landing.add(rid)
            out.send(instance_id(agent.iid), lands, KVLanded(rid))
        elif agent.role == Role.DECODE:
            eng.resume(rid)
    out.send(agent.partner, now, HandoverAck(agent.iid, list(m.rids), taken, kept))
    if agent.taken_t != now:
        agent.taken_t, agent.taken = now, set()
    agent.taken.update(m.rids)


def acked(agent: AcceLLMAgent, now: float, m: HandoverAck, out: Outbox) -> None:
    eng = agent.engine
    dropped = []
    for rid, ok, kept in zip(m.rids, m.taken, m.kept, strict=True):
        agent.awaiting.discard(rid)
        h = eng.held[rid]
        if ok:
            # The partner decodes it now: this copy becomes the redundant one, if there is room.
            size = agent.final_tokens(h) if agent.cfg.eager else h.kv_tokens
            if eng.held_to_replica(rid, size):
                agent.final[rid] = agent.final_tokens(h)
            else:
                dropped.append(rid)
                agent.final[rid] = agent.final_tokens(h)
                agent.lost.add(rid)
        else:
            if agent.refused_t != now:
                agent.refused_t, agent.refused = now, set()
            agent.refused.add(rid)
            # Still ours (pinned unless the partner kept its copy, current as of the hand-over).
            if kept:
                agent.peer[rid] = now
                agent.synced[rid] = h.generated
            else:
                agent.peer.pop(rid, None)
            if agent.role == Role.DECODE:
                eng.resume(rid)
    if dropped:
        out.send(agent.partner, now, ReplicaDropped(agent.iid, dropped))


def handover_message(src: int, held: list[Held], fresh: bool) -> Handover:
    return Handover(
        src,
        [h.rid for h in held],
        [h.arrival_s for h in held],
        [h.prompt for h in held],
        [h.output for h in held],
        [h.generated for h in held],
        fresh,
    )
