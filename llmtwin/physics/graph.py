"""One iteration's operator graph: the real op sequence of a TP-sharded decoder.

An iteration processes a :class:`BatchShape` (prefill chunks and decode sequences together, as a
colocated engine does; either part may be empty). Each op carries its FLOPs, the bytes it moves
through HBM, and its read-only operands (weights, KV cache) as :class:`Tensor` objects, which the
PRESERVE planner may prefetch into L2. All figures are per device of the TP group.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from llmtwin.errors import ConfigurationError
from llmtwin.models.spec import ModelSpec
from llmtwin.physics.precision import Precision

OpKind = Literal["gemm", "attention", "elementwise", "norm", "embedding", "collective"]
TensorKind = Literal["weight", "kv"]
MemoryClass = Literal["stream", "norm", "activation", "rope", "add", "embedding"]
"""Which achieved-bandwidth fraction a memory-bound op runs at (see :class:`Efficiency`)."""
AttentionPhase = Literal["prefill", "decode"]


@dataclass(frozen=True, slots=True)
class AttentionShape:
    """What one attention op computes on one device, beyond its FLOPs and bytes."""

    phase: AttentionPhase
    seqs: int
    """Sequences (prefill chunks, or decoding sequences)."""
    queries: int
    """Query tokens (prefill: chunk tokens; decode: one per sequence)."""
    keys: float
    """Prefill: causal query-key pairs; decode: KV tokens read (sum over sequences)."""
    heads: int
    """Query heads on this device."""
    kv_heads: int
    """KV heads on this device."""
    head_dim: int
    kv_token_bytes: float
    """Bytes of K and V of one token on this device (one layer)."""


VIDUR_OPS = (
    "emb", "input_layernorm", "attn_pre_proj", "attn_rope", "attn_post_proj",
    "post_attention_layernorm", "mlp_up_proj", "mlp_act", "mlp_down_proj", "add",
)  # fmt: skip
"""Op names shared with Vidur's profiling CSVs."""


@dataclass(frozen=True, slots=True)
class BatchShape:
    """What one iteration computes, summed over the sequences in the batch.

    Attention cost needs more than token counts: a prefill chunk of ``c`` new tokens after ``p``
    cached ones does ``c * (p + (c + 1) / 2)`` query-key pairs (causal), and a decode sequence reads
    its whole KV cache.
    """

    prefill_tokens: int = 0
    """New prompt tokens computed this iteration (sum of chunk lengths)."""
    prefill_seqs: int = 0
    """Sequences with a prefill chunk this iteration (one logit row each if the chunk ends the prompt)."""
    prefill_attn_pairs: float = 0.0
    """Causal query-key pairs of the prefill chunks (sum over chunks)."""
    prefill_context_tokens: int = 0
    """KV tokens the prefill chunks attend to that were cached before this iteration."""
    decode_seqs: int = 0
    """Sequences generating one token each."""
    decode_context_tokens: int = 0
    """KV tokens the decode sequences read (sum of their context lengths)."""

    @property
    def tokens(self) -> int:
        """Rows of every GEMM."""
        return self.prefill_tokens + self.decode_seqs

    @property
    def logit_rows(self) -> int:
        return self.prefill_seqs + self.decode_seqs

    @classmethod
    def prefill(cls, batch: int, prompt: int) -> BatchShape:
        """``batch`` whole prompts of ``prompt`` tokens each."""
        return cls(
            prefill_tokens=batch * prompt,
            prefill_seqs=batch,
            prefill_attn_pairs=batch * prompt * (prompt + 1) / 2.0,
        )

    @classmethod
    def decode(cls, batch: int, context: int) -> BatchShape:
        """``batch`` sequences with ``context`` cached tokens each, one new token each."""
        return cls(decode_seqs=batch, decode_context_tokens=batch * context)


@dataclass(frozen=True, slots=True)
class Tensor:
    """A read-only operand resident in HBM: a weight shard or one layer's KV-cache shard."""

    name: str
    kind: TensorKind
    size: float
    """Bytes on one device."""


@dataclass(frozen=True, slots=True)
class Op:
    """One operator of the iteration, as seen by one device."""

    name: str
    kind: OpKind
    layer: int
    """Decoder layer index; -1 before the first layer, ``layers`` after the last."""
    flops: float
    hbm_bytes: float
    """Bytes read and written through HBM if nothing is served from L2 (includes ``tensors``)."""
    tensors: tuple[Tensor, ...] = ()
    gemm_mnk: tuple[int, int, int] | None = None
    """GEMM rows (tokens), output columns and reduction depth, per device."""
    collective: Literal["all_reduce", "all_gather"] | None = None
    message_bytes: float = 0.0
    """For collectives: the payload each rank contributes, bytes."""
    memory_class: MemoryClass = "stream"
    """Bandwidth class of a memory-bound kernel (elementwise, norm, embedding ops)."""
    rows: int = 0
    """Rows of a row-per-block kernel (norm, activation); 0 when the kernel is not row-parallel."""
    attention: AttentionShape | None = None
    """For attention ops: what the kernel model needs beyond FLOPs and bytes."""

    @property
    def prefetchable_bytes(self) -> float:
        return sum(t.size for t in self.tensors)


@dataclass(frozen=True, slots=True)
class ShardPlan:
    """How one model is split over a TP group of ``tp`` devices."""

    tp: int
    heads: int
    kv_heads: int
    """KV heads held per device (replicated when tp exceeds the model's KV heads)."""
    intermediate: int
    vocab: int


def shard(model: ModelSpec, tp: int) -> ShardPlan:
    """Megatron-style split; raises :class:`ConfigurationError` when ``tp`` does not divide the model."""
    if tp < 1:
        raise ConfigurationError(f"TP degree must be >= 1, got {tp}")
    if model.heads % tp:
        raise ConfigurationError(f"TP {tp} does not divide the {model.heads} attention heads of {model.name}")
    if model.kv_heads % tp and tp % model.kv_heads:
        raise ConfigurationError(
            f"TP {tp} and the {model.kv_heads} KV heads of {model.name} do not divide one another"
        )
    if model.intermediate % tp:
        raise ConfigurationError(
            f"TP {tp} does not divide the MLP width {model.intermediate} of {model.name}"
        )
    return ShardPlan(
        tp=tp,
        heads=model.heads // tp,
        kv_heads=max(1, model.kv_heads // tp),
        intermediate=model.intermediate // tp,
        vocab=-(-model.vocab // tp),
    )


@dataclass(slots=True)
class _Builder:
    model: ModelSpec
    plan: ShardPlan
    prec: Precision
    ops: list[Op] = field(default_factory=list)

    def gemm(self, name: str, layer: int, m: int, n: int, k: int, weight: str, experts: int = 1) -> None:
        """A GEMM [m x k] @ [k x n]; ``experts`` distinct weight matrices are read (MoE)."""
        w = self.prec.weight_bytes
        a = self.prec.act_bytes
        weight_bytes = experts * n * k * w
        tensor = Tensor(f"L{layer}.{weight}", "weight", weight_bytes)
        self.ops.append(
            Op(
                name=name,
                kind="gemm",
                layer=layer,
                flops=2.0 * m * n * k,
                hbm_bytes=weight_bytes + (m * k + m * n) * a,
                tensors=(tensor,),
                gemm_mnk=(m, n, k),
            )
        )

    def elementwise(
        self,
        name: str,
        kind: OpKind,
        layer: int,
        elems: float,
        reads: int,
        flops_per: float,
        memory_class: MemoryClass,
        rows: int = 0,
    ) -> None:
        """A memory-bound op touching ``elems`` elements, reading ``reads`` inputs and writing one."""
        a = self.prec.act_bytes
        self.ops.append(
            Op(name, kind, layer, flops=elems * flops_per, hbm_bytes=elems * a * (reads + 1),
               memory_class=memory_class, rows=rows)
        )  # fmt: skip

    def allreduce(self, name: str, layer: int, m: int) -> None:
        if self.plan.tp == 1:
            return
        payload = m * self.model.hidden * self.prec.act_bytes
        # A ring allreduce reads and writes each rank's buffer about 2(n-1)/n times in HBM.
        traffic = payload * 2.0 * 2.0 * (self.plan.tp - 1) / self.plan.tp
        self.ops.append(
            Op(name, "collective", layer, flops=payload / self.prec.act_bytes, hbm_bytes=traffic,
               collective="all_reduce", message_bytes=payload)
        )  # fmt: skip


def build_graph(model: ModelSpec, tp: int, shape: BatchShape, prec: Precision) -> list[Op]:
    """The full op sequence of one iteration (embedding, every layer, final norm, LM head)."""
    plan = shard(model, tp)
    b = _Builder(model, plan, prec)
    m = shape.tokens
    h = model.hidden
    if m <= 0:
        return []
    # An element-parallel gather (index_select), not one block per row: no wave floor.
    b.elementwise("emb", "embedding", -1, m * h, reads=1, flops_per=0.0, memory_class="embedding")
    for layer in range(model.layers):
        _layer(b, layer, shape)
    b.elementwise(
        "final_norm", "norm", model.layers, m * h, reads=1, flops_per=5.0, memory_class="norm", rows=m
    )
    rows = max(1, shape.logit_rows)
    b.gemm("lm_head", model.layers, rows, plan.vocab, h, "lm_head")
    if tp > 1:
        # Logits are gathered for sampling; small (rows x vocab) so latency-bound.
        payload = rows * plan.vocab * prec.act_bytes
        gather = Op("lm_head_gather", "collective", model.layers, 0.0, payload * 2, collective="all_gather",
                    message_bytes=payload)  # fmt: skip
        b.ops.append(gather)
    return b.ops


def attention_ops(model: ModelSpec, tp: int, shape: BatchShape, prec: Precision, layer: int = 0) -> list[Op]:
    """The attention ops of decoder layer ``layer`` (prefill, then decode), as :func:`build_graph`
    makes them: the only ops whose cost depends on more of ``shape`` than its rows (``tokens``
    and ``logit_rows``), which is what lets :class:`~llmtwin.physics.step.StepModel` keep the
    others' times."""
    plan = shard(model, tp)
    b = _Builder(model, plan, prec)
    _attention(b, layer, shape, plan.heads * model.head_dim, plan.kv_heads * model.head_dim)
    return b.ops


def allreduce_ops(model: ModelSpec, tp: int, tokens: int, prec: Precision, layer: int = 0) -> list[Op]:
    """The tensor-parallel allreduces of decoder layer ``layer`` of an iteration of ``tokens``
    tokens, as :func:`build_graph` makes them (after attention, after the MLP; none at TP 1):
    their size depends on the tokens only."""
    b = _Builder(model, shard(model, tp), prec)
    b.allreduce("attn_allreduce", layer, tokens)
    b.allreduce("mlp_allreduce", layer, tokens)
    return b.ops


def _layer(b: _Builder, layer: int, shape: BatchShape) -> None:
    model, plan = b.model, b.plan
    m = shape.tokens
    h = model.hidden
    d = model.head_dim
    q_dim = plan.heads * d
    kv_dim = plan.kv_heads * d
    b.elementwise(
        "input_layernorm", "norm", layer, m * h, reads=1, flops_per=5.0, memory_class="norm", rows=m
    )
    b.gemm("attn_pre_proj", layer, m, q_dim + 2 * kv_dim, h, "qkv")
    if model.positional == "rope":
        b.elementwise(
            "attn_rope", "elementwise", layer, m * (q_dim + kv_dim), reads=1, flops_per=6.0,
            memory_class="rope", rows=m,
        )  # fmt: skip
    _attention(b, layer, shape, q_dim, kv_dim)
    b.gemm("attn_post_proj", layer, m, h, q_dim, "o")
    b.allreduce("attn_allreduce", layer, m)
    b.elementwise("add", "elementwise", layer, m * h, reads=2, flops_per=1.0, memory_class="add")
    b.elementwise(
        "post_attention_layernorm", "norm", layer, m * h, reads=1, flops_per=5.0, memory_class="norm", rows=m
    )
    inter = plan.intermediate
    touched = min(model.experts, model.experts_per_token * max(1, m)) if model.experts > 1 else 1
    if model.experts > 1:
        b.gemm("moe_router", layer, m, model.experts, h, "router")
    up_cols = (2 if model.gated_mlp else 1) * inter
    # With MoE each token's rows go to top-k experts: m*k rows spread over ``touched`` matrices.
    rows = m * model.experts_per_token
    b.gemm("mlp_up_proj", layer, rows, up_cols, h, "mlp_up", experts=touched)
    b.elementwise(
        "mlp_act", "elementwise", layer, rows * inter, reads=2 if model.gated_mlp else 1, flops_per=8.0,
        memory_class="activation", rows=rows,
    )  # fmt: skip
    b.gemm("mlp_down_proj", layer, rows, h, inter, "mlp_down", experts=touched)
    b.allreduce("mlp_allreduce", layer, m)
    b.elementwise("add", "elementwise", layer, m * h, reads=2, flops_per=1.0, memory_class="add")


def _attention(b: _Builder, layer: int, shape: BatchShape, q_dim: int, kv_dim: int) -> None:
    """Prefill attention is compute-bound (causal FLOPs ~ s^2); decode attention reads every KV byte."""
    prec = b.prec
    d = b.model.head_dim
    heads = b.plan.heads
    kv_token = 2 * kv_dim * prec.kv_bytes  # K and V of one token, one layer, one device
    window = b.model.sliding_window
    if shape.prefill_tokens:
        pairs = shape.prefill_attn_pairs
        flops = 4.0 * pairs * d * heads  # QK^T and PV, 2 FLOPs per MAC each
        kv_read = (shape.prefill_context_tokens + shape.prefill_tokens) * kv_token
        io = (
            shape.prefill_tokens * (2 * q_dim) * prec.act_bytes + shape.prefill_tokens * kv_token
        )  # q, out, kv write
        cached = Tensor(f"L{layer}.kv_prefix", "kv", shape.prefill_context_tokens * kv_token)
        kernel = AttentionShape("prefill", shape.prefill_seqs, shape.prefill_tokens, pairs, heads,
                                b.plan.kv_heads, d, kv_token)  # fmt: skip
        b.ops.append(
            Op("attn_prefill", "attention", layer, flops, kv_read + io,
               tensors=(cached,) if shape.prefill_context_tokens else (), attention=kernel)
        )  # fmt: skip
    if shape.decode_seqs:
        ctx = shape.decode_context_tokens
        if window is not None:
            ctx = min(ctx, shape.decode_seqs * window)
        kv_read = ctx * kv_token
        flops = 4.0 * ctx * d * heads
        io = shape.decode_seqs * (2 * q_dim * prec.act_bytes + kv_token)
        kernel = AttentionShape("decode", shape.decode_seqs, shape.decode_seqs, ctx, heads, b.plan.kv_heads,
                                d, kv_token)  # fmt: skip
        b.ops.append(
            Op("attn_decode", "attention", layer, flops, kv_read + io,
               tensors=(Tensor(f"L{layer}.kv", "kv", kv_read),), attention=kernel)
        )  # fmt: skip
