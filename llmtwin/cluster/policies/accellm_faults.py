"""AcceLLM when an instance fails: its partner's redundant copies keep its requests alive.

The failing instance tells the balancer (``InstanceDown``) and its partner (``PartnerDown``,
with every request it owned). The partner decodes, without any recompute, each of those whose
copy it holds current (every copy, with eager sync); the others (no copy: pinned, a prompt still
queued or being prefilled there, a fresh copy not landed yet) are reported lost and the balancer
has them prefilled again on a healthy pair. The partner also gives back its own prompt queue
(prompts go to healthy pairs; the pair takes no new request while a healthy pair exists),
decodes from then on, and keeps its own requests, which have no copy any more (pinned), until they
finish. A request whose whole KV was still crossing from the failed instance is lost too. When
the failed instance comes back (empty, decoding), the pair works as before for new requests.
If both instances of a pair are down, each reports its requests lost to the balancer itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmtwin.cluster.context import BALANCER, instance_id
from llmtwin.cluster.faults import entries, lost_requests, recover_time
from llmtwin.cluster.messages import Handover, HandoverAck, InstanceDown, InstanceUp, PartnerDown, RoleChanged
from llmtwin.cluster.seqs import Held, LostSeq, Role
from llmtwin.scenario.spec import FaultSpec
from llmtwin.sim.kernel import Outbox

if TYPE_CHECKING:
    from llmtwin.cluster.policies.accellm_agent import AcceLLMAgent


def went_down(agent: AcceLLMAgent, now: float, fault: FaultSpec, lost: list[LostSeq], out: Outbox) -> None:
    """``agent``'s instance failed: the balancer and (if it is up) the partner hear of it."""
    out.send(BALANCER, now, InstanceDown(agent.iid, recover_time(fault), [s.rid for s in lost]))
    if agent.partner_down or agent.ctx.down(agent.cfg.partner, now):
        if lost:
            out.send(BALANCER, now, lost_requests(agent.iid, lost))
    else:
        # The partner's copy of a request holds every token's KV with eager sync; with sync on
        # hand-over, only if no token was made since the last sync.
        current = [
            agent.peer.get(s.rid, now + 1.0) <= now
            and (agent.cfg.eager or agent.synced.get(s.rid) == s.generated)
            for s in lost
        ]
        out.send(agent.partner, now, PartnerDown(agent.iid, lost_requests(agent.iid, lost), current))
    agent.reset()


def came_up(agent: AcceLLMAgent, now: float, out: Outbox) -> None:
    """Back, empty and decoding; the partner's role is unknown until it says (``partner_back``)."""
    agent.reset()
    agent.partner_decodes = False
    out.send(BALANCER, now, InstanceUp(agent.iid))
    if agent.ctx.down(agent.cfg.partner, now):
        agent.partner_down = True
    else:
        out.send(agent.partner, now, InstanceUp(agent.iid))


def partner_back(agent: AcceLLMAgent, now: float, out: Outbox) -> None:
    """The partner is back, empty and decoding: it hears this instance's role."""
    agent.partner_down = False
    agent.partner_decodes = True
    seqs, tokens = agent.engine.decode_load() if agent.role == Role.DECODE else (0, 0)
    out.send(agent.partner, now, RoleChanged(agent.iid, agent.role, agent.received, seqs, tokens, 0))


def partner_failed(agent: AcceLLMAgent, now: float, m: PartnerDown, out: Outbox) -> None:
    """Take over what the copies allow; report the rest lost; give the prompt queue back."""
    agent.partner_down = True
    agent.partner_decodes = False
    eng = agent.engine
    gone: list[LostSeq] = []
    for rid in sorted(agent.landing):  # their KV was still crossing from the failed instance
        h = eng.drop_held(rid)
        gone.append(LostSeq(rid, h.arrival_s, h.prompt, h.output, h.generated, h.kv_tokens))
    agent.landing.clear()
    for e, current in zip(entries(m.owned), m.current, strict=True):
        a = e.arrival
        if a.rid in eng.running or a.rid in eng.held:
            continue  # handed over and taken before the failure: already decoded here
        h = Held(a.rid, a.arrival_s, a.prompt_tokens, a.output_tokens, e.generated)
        if current and a.rid in eng.replicas and eng.replica_to_held(h):
            if agent.role == Role.DECODE:
                eng.resume(a.rid)
        else:
            gone.append(LostSeq(a.rid, h.arrival_s, h.prompt, h.output, h.generated, e.kv_tokens))
    for rid in list(eng.replicas):  # copies of requests the partner no longer has
        eng.drop_replica(rid)
    agent.final.clear()
    agent.lost.clear()
    agent.peer.clear()
    agent.synced.clear()
    if agent.role == Role.PREFILL:
        jobs = eng.drop_waiting()
        gone += [LostSeq(j.rid, j.arrival_s, j.prompt, j.output, j.generated, j.done) for j in jobs]
        agent.prompts -= {j.rid for j in jobs}
        agent.become(Role.DECODE)
    if gone:
        out.send(BALANCER, now, lost_requests(agent.iid, gone))


def refuse(agent: AcceLLMAgent, now: float, m: Handover, out: Outbox) -> None:
    """A hand-over reached this instance while it is down: the sender keeps the requests."""
    no = [False] * len(m.rids)
    out.send(instance_id(m.src), now, HandoverAck(agent.iid, list(m.rids), no, no))
