"""Attention kernels: causal tile padding, occupancy, head dimension, paged decode, GQA, L2."""

from __future__ import annotations

import dataclasses

import pytest

from llmtwin.hardware import HardwareCatalog, HardwareSpec
from llmtwin.models import ModelCatalog
from llmtwin.physics.attention import decode_attention_time, head_dim_factor, prefill_rate
from llmtwin.physics.graph import AttentionShape, BatchShape, Op
from llmtwin.physics.op_time import op_time
from llmtwin.physics.precision import Precision
from llmtwin.physics.step import StepModel


def attention_op(sm: StepModel, shape: BatchShape, name: str) -> Op:
    return next(op for op in sm.ops_one_layer(shape) if op.name == name)


def with_eff(hw: HardwareSpec, **fields: float) -> HardwareSpec:
    return dataclasses.replace(hw, efficiency=hw.efficiency.replace_numbers(fields))


def test_long_prefill_runs_at_the_asymptotic_kernel_efficiency() -> None:
    """A long prompt over many heads fills the device: compute time = padded FLOPs at
    peak x gemm_max x attention_realised x ramp, with ramp ~ 1."""
    hw = HardwareCatalog().get("a100-80g")
    sm = StepModel(hw, ModelCatalog().get("llama-2-70b"), 2, check_fit=False)
    op = attention_op(sm, BatchShape.prefill(1, 16384), "attn_prefill")
    assert op.attention is not None
    e = hw.efficiency
    keys_per_query = op.attention.keys / op.attention.queries
    ramp = keys_per_query / (keys_per_query + e.attention_ramp_keys)
    rate = hw.compute_peak("bf16") * e.gemm_max * e.attention_realised * ramp
    padded = op.flops * (1 + op.attention.queries * e.attention_tile_keys / 2 / op.attention.keys)
    assert op_time(hw, op, Precision(), 2) == pytest.approx(padded / rate, rel=0.02)


def test_a_short_prompt_at_high_tp_cannot_fill_the_device() -> None:
    """One 256-token prompt with 8 heads per device gives fewer thread blocks than SMs: the kernel
    runs at that fraction of its rate, and at a lower ramp than a long prompt."""
    hw = HardwareCatalog().get("a100-80g")
    short = AttentionShape("prefill", 1, 256, 256 * 257 / 2, 8, 1, 128, 512.0)
    long = AttentionShape("prefill", 1, 8192, 8192 * 8193 / 2, 8, 1, 128, 512.0)
    blocks = 8 * (256 / hw.efficiency.attention_tile_queries + 0.5)
    ramp_short = 128.5 / (128.5 + hw.efficiency.attention_ramp_keys)
    ramp_long = 4096.5 / (4096.5 + hw.efficiency.attention_ramp_keys)
    ratio = prefill_rate(hw, short, "bf16") / prefill_rate(hw, long, "bf16")
    assert ratio == pytest.approx(blocks / hw.compute_units * ramp_short / ramp_long, rel=1e-9)


def test_smaller_heads_run_less_efficiently_never_more() -> None:
    hw = HardwareCatalog().get("a100-80g")
    assert head_dim_factor(hw, 128) == 1.0
    assert head_dim_factor(hw, 64) == pytest.approx(0.8, abs=0.01)
    assert head_dim_factor(hw, 256) == 1.0


def test_paged_decode_reads_whole_blocks_at_the_gather_bandwidth() -> None:
    """MHA decode: KV bytes plus half a block per sequence, at hbm x decode_attention_bw."""
    hw = with_eff(HardwareCatalog().get("a100-80g"), decode_attention_unit_s=0.0, kernel_overhead_s=0.0)
    kv_token = 2 * 32 * 128 * 2.0
    shape = AttentionShape("decode", 16, 16, 16 * 1000, 32, 32, 128, kv_token)
    kv = 16 * 1000 * kv_token
    e = hw.efficiency
    expected = (kv + 16 * e.kv_block_tokens / 2 * kv_token) / (
        hw.hbm_bandwidth * e.hbm * e.decode_attention_bw
    )
    assert decode_attention_time(hw, shape, kv, 0.0) == pytest.approx(expected, rel=1e-9)


def test_gqa_rereads_cost_l2_bandwidth_only_when_the_kernel_rereads() -> None:
    """A group of 8 query heads per KV head: one thread block per query head rereads the group's KV
    through L2 (bound by L2 bandwidth); a kernel that shares each read does not."""
    hw = with_eff(HardwareCatalog().get("a100-80g"), decode_attention_unit_s=0.0, kernel_overhead_s=0.0)
    shape = AttentionShape("decode", 64, 64, 64 * 4000, 8, 1, 128, 512.0)
    kv = 64 * 4000 * 512.0
    per_query_head = decode_attention_time(with_eff(hw, decode_gqa_rereads=1.0), shape, kv, 0.0)
    shared = decode_attention_time(hw, shape, kv, 0.0)  # the default: one read per KV head
    assert per_query_head > shared
    padded = kv + 64 * hw.efficiency.kv_block_tokens / 2 * 512.0
    assert per_query_head == pytest.approx(8 * padded / (hw.l2_bandwidth * hw.efficiency.l2), rel=1e-9)


def test_prefetched_kv_makes_decode_attention_faster_but_not_free() -> None:
    """KV served from L2 (a PRESERVE plan) skips its HBM read; the L2 reads remain."""
    hw = HardwareCatalog().get("a100-80g")
    sm = StepModel(hw, ModelCatalog().get("llama-2-7b"), 1)
    op = attention_op(sm, BatchShape.decode(8, 2000), "attn_decode")
    cold = op_time(hw, op, sm.prec, 1)
    warm = op_time(hw, op, sm.prec, 1, op.prefetchable_bytes)
    assert 0 < warm < cold
    assert warm >= op.prefetchable_bytes / (hw.l2_bandwidth * hw.efficiency.l2)
