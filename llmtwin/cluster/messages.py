"""Bodies of the envelopes the cluster twin's components exchange, and their exports.

Components: ``generator`` (arrivals), ``balancer`` (hosts the serving policy) and
``instance-<i>`` (one engine each). They interact only through these messages, so the same
components run in one process or as services over NATS. Every field is a plain type; times are
virtual seconds, sizes are tokens or bytes as named.

``PRIORITY`` orders messages that take effect at the same virtual instant
(:class:`~llmtwin.sim.kernel.MessagePriority`, next to the event-ordering rule). These are plain
data: the core never encodes them; ``proto/codec.py`` does, at the edge.
"""

from __future__ import annotations

from typing import ClassVar

import msgspec

from llmtwin.sim.kernel import MessagePriority

# -- generator -> balancer ---------------------------------------------------------------------


class Arrival(msgspec.Struct, frozen=True, tag="twin.v1.arrival"):
    """A request reaches the cluster (delivered at its arrival time)."""

    PRIORITY: ClassVar[MessagePriority] = MessagePriority.ARRIVAL
    rid: int
    arrival_s: float
    prompt_tokens: int
    output_tokens: int
    """Tokens requested, the first one included."""


# -- balancer -> instance ----------------------------------------------------------------------


class Dispatch(msgspec.Struct, frozen=True, tag="twin.v1.dispatch"):
    """Prefill this request here (a new request, or a recompute after a preemption)."""

    PRIORITY: ClassVar[MessagePriority] = MessagePriority.DISPATCH
    rid: int
    arrival_s: float
    prompt_tokens: int
    output_tokens: int
    generated_tokens: int = 0
    """Tokens already produced; the prefill then covers prompt + generated tokens."""
    kv_target: int = -1
    """Disaggregated: the decode instance that receives the KV after the prefill (-1: none)."""


# -- instance -> balancer ----------------------------------------------------------------------


class Done(msgspec.Struct, frozen=True, tag="twin.v1.done"):
    """A request produced its last token on ``instance`` (delivered at that time)."""

    PRIORITY: ClassVar[MessagePriority] = MessagePriority.COMPLETION
    rid: int
    instance: int
    kv_used_blocks: int
    """The instance's KV blocks in use just after freeing this request's."""


class PrefillDone(msgspec.Struct, frozen=True, tag="twin.v1.prefill_done"):
    """A prefill finished on ``instance`` (its first, or next, token is out)."""

    PRIORITY: ClassVar[MessagePriority] = MessagePriority.COMPLETION
    rid: int
    instance: int
    prompt_tokens: int
    generated_tokens: int
    kv_used_blocks: int = 0
    """The instance's KV blocks in use at that moment."""


class Preempted(msgspec.Struct, frozen=True, tag="twin.v1.preempted"):
    """A decode-only instance ran out of KV memory and dropped the request: prefill it again."""

    PRIORITY: ClassVar[MessagePriority] = MessagePriority.PREEMPTION
    rid: int
    instance: int
    arrival_s: float
    prompt_tokens: int
    output_tokens: int
    generated_tokens: int


class RoleChanged(msgspec.Struct, frozen=True, tag="twin.v1.role_changed"):
    """AcceLLM: ``instance`` took a new role (to the balancer and to its partner)."""

    PRIORITY: ClassVar[MessagePriority] = MessagePriority.ROLE
    instance: int
    role: str
    """``prefill`` or ``decode``."""
    prefilled: int
    """Prompts this instance has prefilled so far (the balancer matches it to its dispatches)."""
    decode_seqs: int
    """Sequences it decodes now."""
    decode_kv_tokens: int
    """Their KV tokens (context lengths summed)."""
    pinned: int
    """Of them, those without a copy on the partner."""


# -- instance -> instance ----------------------------------------------------------------------


class KVTransfer(msgspec.Struct, frozen=True, tag="twin.v1.kv_transfer"):
    """Disaggregated: a request was prefilled for the receiver, whose KV is ready on ``src``
    (delivered at the end of the prefill)."""

    PRIORITY: ClassVar[MessagePriority] = MessagePriority.TRANSFER
    rid: int
    src: int
    arrival_s: float
    prompt_tokens: int
    output_tokens: int
    generated_tokens: int
    kv_tokens: int
    """Tokens of KV to send."""
    lands_s: float
    """When the KV would be complete on the receiver if it takes it now (layer-wise streaming
    overlaps the prefill); a receiver without room pulls it later and waits a whole transfer."""


class KVLanded(msgspec.Struct, frozen=True, tag="twin.v1.kv_landed"):
    """Disaggregated: an instance to itself, when a KV transfer it accepted has fully arrived."""

    PRIORITY: ClassVar[MessagePriority] = MessagePriority.TRANSFER
    rid: int


class KVRelease(msgspec.Struct, frozen=True, tag="twin.v1.kv_release"):
    """Disaggregated: the receiver holds the KV now; the sender may free its copy."""

    PRIORITY: ClassVar[MessagePriority] = MessagePriority.FREE
    rid: int
    src: int


class Handover(msgspec.Struct, frozen=True, tag="twin.v1.handover"):
    """AcceLLM: the sender stopped decoding these requests; the receiver should decode them.

    Delivered when the receiver's copy is current: at once with eager sync, after the tokens
    generated since the last sync have crossed the link with sync on hand-over, or (``fresh``)
    when a just-prefilled request's KV has streamed over layer by layer. The sender keeps its
    copy until the :class:`HandoverAck`. Parallel lists, one entry per request."""

    PRIORITY: ClassVar[MessagePriority] = MessagePriority.TRANSFER
    src: int
    rids: list[int]
    arrival_s: list[float]
    prompt_tokens: list[int]
    output_tokens: list[int]
    generated_tokens: list[int]
    fresh: bool = False
    """The requests were just prefilled by the sender and their KV came with this message."""


class HandoverAck(msgspec.Struct, frozen=True, tag="twin.v1.handover_ack"):
    """AcceLLM: which requests of a :class:`Handover` the receiver took (it decodes those; the
    sender keeps a redundant copy of them if it has room). The others stay with the sender."""

    PRIORITY: ClassVar[MessagePriority] = MessagePriority.HANDOVER_ACK
    src: int
    rids: list[int]
    taken: list[bool]
    kept: list[bool]
    """For a request not taken: whether the receiver still holds its (older) redundant copy."""


class ReplicaDropped(msgspec.Struct, frozen=True, tag="twin.v1.replica_dropped"):
    """AcceLLM: the sender no longer holds a copy of these requests (evicted for room); the
    receiver's copy is the only one, so they are pinned to the receiver."""

    PRIORITY: ClassVar[MessagePriority] = MessagePriority.FREE
    src: int
    rids: list[int]


class RebuildRequest(msgspec.Struct, frozen=True, tag="twin.v1.rebuild_request"):
    """AcceLLM: the sender has room again and reserved copies of these requests (which it had
    evicted); their owner streams their KV over and may hand them over again once it landed."""

    PRIORITY: ClassVar[MessagePriority] = MessagePriority.REBUILD
    src: int
    rids: list[int]


class SwitchBack(msgspec.Struct, frozen=True, tag="twin.v1.switch_back"):
    """AcceLLM: an instance to itself, when its prefill queue has stayed empty for the linger
    time (``epoch`` tells a stale timer from the current one)."""

    PRIORITY: ClassVar[MessagePriority] = MessagePriority.TIMER
    epoch: int


class PartnerDone(msgspec.Struct, frozen=True, tag="twin.v1.partner_done"):
    """AcceLLM: these requests left the sender (finished, or preempted for a recompute); the
    receiver drops its copies."""

    PRIORITY: ClassVar[MessagePriority] = MessagePriority.FREE
    src: int
    rids: list[int]


# -- faults (llmtwin/cluster/faults.py) ---------------------------------------------------------


class InstanceDown(msgspec.Struct, frozen=True, tag="twin.v1.instance_down"):
    """An instance failed (the failure detector's report, at the fault's virtual time): route
    nothing to it until :class:`InstanceUp`. Lists every request it held (for the fault log;
    which of them are lost comes with :class:`LostRequests`)."""

    PRIORITY: ClassVar[MessagePriority] = MessagePriority.ROLE
    instance: int
    recover_s: float
    """When it comes back (-1: never)."""
    rids: list[int]


class InstanceUp(msgspec.Struct, frozen=True, tag="twin.v1.instance_up"):
    """A failed instance is back, empty, in its starting role (to the balancer and, AcceLLM,
    to its partner)."""

    PRIORITY: ClassVar[MessagePriority] = MessagePriority.ROLE
    instance: int


class LostRequests(msgspec.Struct, frozen=True, tag="twin.v1.lost_requests"):
    """Requests whose KV a failure destroyed (or that reached a failed instance): the balancer
    has them prefilled again elsewhere, over prompt + the tokens already produced. With
    ``kv_at[i] >= 0`` (disaggregated) the KV is intact on that prefill instance and only needs a
    new decode instance. Parallel lists, one entry per request."""

    PRIORITY: ClassVar[MessagePriority] = MessagePriority.PREEMPTION
    instance: int
    """The instance that reports them."""
    rids: list[int]
    arrival_s: list[float]
    prompt_tokens: list[int]
    output_tokens: list[int]
    generated_tokens: list[int]
    kv_tokens: list[int]
    """KV tokens computed for the request and lost (what a recompute does again)."""
    kv_at: list[int]


class PartnerDown(msgspec.Struct, frozen=True, tag="twin.v1.partner_down"):
    """AcceLLM: the sender failed, losing these requests' primaries (it owned them). The receiver
    decodes those it holds a current copy of and reports the others lost. Handled after KV
    transfers of the same instant (timer priority), so a hand-over that landed by the fault counts."""

    PRIORITY: ClassVar[MessagePriority] = MessagePriority.TIMER
    src: int
    owned: LostRequests
    """The requests, as the balancer would be told of them."""
    current: list[bool]
    """Whether the receiver's copy (if it has one) holds every token's KV (eager sync)."""


class KVAbandoned(msgspec.Struct, frozen=True, tag="twin.v1.kv_abandoned"):
    """Disaggregated: the prefill instance ``src`` failed while these requests' KV was on its way
    to the receiver (or waiting for room there): those not fully landed are lost."""

    PRIORITY: ClassVar[MessagePriority] = MessagePriority.FREE
    src: int
    rids: list[int]


class Redirect(msgspec.Struct, frozen=True, tag="twin.v1.redirect"):
    """Disaggregated: the decode instance chosen for this request failed before taking its KV;
    offer it to ``target`` instead (the whole KV crosses the link from now)."""

    PRIORITY: ClassVar[MessagePriority] = MessagePriority.TRANSFER
    rid: int
    target: int


# -- exports (each component's part of the results) ---------------------------------------------


class GeneratorExport(msgspec.Struct, frozen=True, tag="twin.v1.generator_export"):
    """The requests of the run, parallel lists in rid order."""

    rids: list[int]
    arrival_s: list[float]
    prompt_tokens: list[int]
    output_tokens: list[int]


class BalancerExport(msgspec.Struct, frozen=True, tag="twin.v1.balancer_export"):
    """What the balancer decided: failures, and its counters."""

    failed_rids: list[int]
    failed_reasons: list[str]
    completed: int
    dispatches: int
    """Prefills dispatched (recomputes included)."""
    fault_rids: list[int] = msgspec.field(default_factory=list)
    """Requests an instance held when it failed, or that reached a failed instance."""
    recomputed_rids: list[int] = msgspec.field(default_factory=list)
    recomputed_kv_tokens: list[int] = msgspec.field(default_factory=list)
    """Requests prefilled again because a failure destroyed their KV, and the KV tokens lost."""
    redirected_rids: list[int] = msgspec.field(default_factory=list)
    """Disaggregated: requests whose intact KV went to another decode instance after a failure."""


class InstanceExport(msgspec.Struct, frozen=True, tag="twin.v1.instance_export"):
    """One instance's logs; :func:`llmtwin.cluster.run.assemble_result` turns them into records.

    Iteration ``i`` of segment ``s`` (``seg_it[s] <= i < seg_it[s] + seg_k[s]``) ends at
    ``seg_anchor_t[s] + (i - seg_anchor_it[s] + 1) * seg_dt[s]``.
    """

    iid: int
    devices: int
    kv_capacity_blocks: int
    block_bytes: float
    """Bytes of one KV block on one device."""
    seg_anchor_it: list[int]
    seg_anchor_t: list[float]
    seg_dt: list[float]
    seg_it: list[int]
    seg_k: list[int]
    seg_decode: list[int]
    """Decode sequences in each iteration of the segment."""
    seg_prefill_seqs: list[int]
    seg_prefill_tokens: list[int]
    seg_role: list[str]
    """``prefill``, ``decode`` or ``mixed``: what the iterations computed."""
    range_rid: list[int]
    range_first: list[int]
    range_last: list[int]
    """Request ``range_rid[j]`` produced one token in each iteration ``range_first[j]..range_last[j]``."""
    preempted_rids: list[int]
    moved_rids: list[int]
    moved_bytes: list[float]
    """KV bytes moved between instances for request ``moved_rids[j]`` (all devices together),
    counted once per transfer, by the side that knows when it happens."""
    kv_t: list[float]
    kv_primary_blocks: list[int]
    kv_redundant_blocks: list[int]
    role_t: list[float]
    role: list[str]
    chunk_rid: list[int]
    chunk_it: list[int]
    """Request ``chunk_rid[j]``'s prefill started in iteration ``chunk_it[j]`` (its first chunk)."""
