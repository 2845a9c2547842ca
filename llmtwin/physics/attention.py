"""Attention kernels from first principles: FlashAttention-style prefill, paged decode.

Neither kernel is in the measured operator profiles, so every assumption below is a named
:class:`~llmtwin.hardware.spec.Efficiency` field with its source or a stated estimate
(docs/device-model.md, section 2b, lists them with their uncertainty).

**Prefill** (a fused, tiled kernel: FlashAttention-2 and its relatives). The kernel walks query
tiles of ``attention_tile_queries`` rows against key tiles of ``attention_tile_keys`` columns and
computes every tile that touches the causal triangle in full, so each query also computes about
half a key tile of masked scores: ``pairs + queries * tile_keys / 2`` query-key pairs, at 4
FLOPs per pair per head dimension (QK^T and PV). It runs at

    peak * gemm_max * attention_realised * dim(d) * ramp(k) * occupancy

* ``dim(d) = min(1, (d / (d + attention_head_dim_half)) / (128 / (128 + attention_head_dim_half)))``:
  smaller heads do less work per loaded tile (the efficiency is quoted at d = 128);
* ``ramp(k) = k / (k + attention_ramp_keys)`` with ``k`` the mean keys a query attends: a short
  sequence amortises each tile's fixed work (loading Q, the online-softmax rescale, writing O)
  over few key tiles;
* ``occupancy = min(1, work_units / compute_units)``: one thread block per (sequence, head,
  query tile); a single short prompt at high TP has fewer blocks than the device has SMs.

Its memory traffic is the graph's (Q, O, new K/V, cached K/V read once), combined with the
compute time by the roofline's smooth maximum.

**Decode** (paged attention: each sequence reads its KV cache in blocks). HBM traffic is the KV
bytes with every sequence's last block read whole (``kv_block_tokens``: half a block per
sequence on average), at ``decode_attention_bw`` of the streaming bandwidth (blocks are
gathered, not streamed). With grouped-query attention each KV head serves ``group`` query heads;
a kernel that runs one thread block per query head (vLLM's paged kernel) reads the group's KV
``group`` times, the first from HBM and ``decode_gqa_rereads x (group - 1)`` more from L2, so the
kernel takes the longer of its HBM reads and all its reads through L2. Each
(sequence, KV head) work unit costs ``decode_attention_unit_s`` of fixed time (block-table
walk, softmax reduction across partitions, write-out), spread over the device's compute units.
"""

from __future__ import annotations

import math

from llmtwin.hardware.spec import HardwareSpec
from llmtwin.physics.graph import AttentionShape
from llmtwin.physics.roofline import class_bandwidth_fraction, memory_time, smooth_max

REFERENCE_HEAD_DIM = 128
"""Head dimension at which ``attention_realised`` is quoted."""


def prefill_tile_padding(shape: AttentionShape, tile_keys: float) -> float:
    """Factor by which a tiled causal kernel's computed pairs exceed the causal ones: each query
    also computes about half a key tile of masked scores on the diagonal."""
    if shape.keys <= 0:
        return 1.0
    return (shape.keys + shape.queries * tile_keys / 2.0) / shape.keys


def decode_block_padding_bytes(shape: AttentionShape, block_tokens: float) -> float:
    """KV bytes a paged kernel reads beyond the sequences' tokens: each sequence's last block is
    read whole (half a block per sequence on average)."""
    return shape.seqs * block_tokens / 2.0 * shape.kv_token_bytes if shape.keys > 0 else 0.0


def head_dim_factor(hw: HardwareSpec, head_dim: int) -> float:
    """Relative prefill-kernel efficiency at ``head_dim`` (1 at the reference 128, never above)."""
    half = hw.efficiency.attention_head_dim_half

    def eff(d: float) -> float:
        return d / (d + half)

    return min(1.0, eff(head_dim) / eff(REFERENCE_HEAD_DIM))


def prefill_rate(hw: HardwareSpec, shape: AttentionShape, dtype: str) -> float:
    """FLOP/s the prefill kernel reaches for ``shape``."""
    e = hw.efficiency
    keys_per_query = shape.keys / max(1, shape.queries)
    ramp = keys_per_query / (keys_per_query + e.attention_ramp_keys)
    query_tiles = shape.queries / e.attention_tile_queries + shape.seqs / 2.0  # partial last tiles
    units = shape.heads * query_tiles
    occupancy = min(1.0, units / hw.compute_units)
    dim = head_dim_factor(hw, shape.head_dim)
    return hw.compute_peak(dtype) * e.gemm_max * e.attention_realised * dim * ramp * occupancy


def prefill_attention_time(
    hw: HardwareSpec, shape: AttentionShape, flops: float, hbm_bytes: float, l2_bytes: float, dtype: str
) -> float:
    """Seconds of a fused causal prefill kernel whose causal pairs cost ``flops``."""
    e = hw.efficiency
    padded = flops * prefill_tile_padding(shape, e.attention_tile_keys)
    t_c = padded / prefill_rate(hw, shape, dtype)
    t_m = memory_time(hw, hbm_bytes, l2_bytes, class_bandwidth_fraction(e, "stream"))
    return e.gemm_overhead_s + smooth_max(t_c, t_m, e.roofline_sharpness)


def decode_attention_time(
    hw: HardwareSpec, shape: AttentionShape, hbm_bytes: float, l2_bytes: float
) -> float:
    """Seconds of a paged decode kernel whose tokens move ``hbm_bytes`` (KV, Q, O), of which
    ``l2_bytes`` of KV were prefetched into L2."""
    e = hw.efficiency
    gather = hw.hbm_bandwidth * min(1.0, e.hbm * e.decode_attention_bw)
    kv_bytes = hbm_bytes + decode_block_padding_bytes(shape, e.kv_block_tokens)
    group = shape.heads / max(1, shape.kv_heads)
    # Every read passes through L2 (the group's further reads of a block hit it there); only the
    # first read of a block not prefetched comes from HBM. Both run concurrently.
    l2_reads = kv_bytes * (1.0 + e.decode_gqa_rereads * max(0.0, group - 1.0))
    t_m = max(max(0.0, kv_bytes - l2_bytes) / gather, l2_reads / (hw.l2_bandwidth * e.l2))
    units = shape.seqs * shape.kv_heads
    t_fixed = math.ceil(units / hw.compute_units) * e.decode_attention_unit_s
    return e.kernel_overhead_s + t_fixed + t_m
