"""Time of one op of the graph on one device, whatever its kind.

GEMMs and memory-bound kernels follow the roofline (:mod:`llmtwin.physics.roofline`), attention
its own kernels (:mod:`llmtwin.physics.attention`), collectives the alpha-beta model
(:mod:`llmtwin.physics.collectives`).
"""

from __future__ import annotations

from llmtwin.hardware.spec import HardwareSpec
from llmtwin.physics.attention import decode_attention_time, prefill_attention_time
from llmtwin.physics.collectives import collective_time
from llmtwin.physics.graph import Op
from llmtwin.physics.precision import Precision
from llmtwin.physics.roofline import gemm_time, memory_kernel_time


def op_time(hw: HardwareSpec, op: Op, prec: Precision, tp: int, l2_bytes: float = 0.0) -> float:
    """Seconds one op takes on one device of a TP group of ``tp``; ``l2_bytes`` of its read-only
    operands are served from L2."""
    if op.kind == "collective":
        assert op.collective is not None
        return collective_time(hw, op.collective, tp, op.message_bytes)
    if op.kind == "gemm":
        return gemm_time(hw, op.flops, op.hbm_bytes, l2_bytes, prec.compute_dtype)
    if op.kind == "attention":
        assert op.attention is not None
        if op.attention.phase == "decode":
            return decode_attention_time(hw, op.attention, op.hbm_bytes, l2_bytes)
        # Attention matmuls run at the activations' precision (KV is up-converted if narrower).
        return prefill_attention_time(hw, op.attention, op.flops, op.hbm_bytes, l2_bytes, prec.activations)
    rows = float(op.rows) if op.rows > 0 else None
    return memory_kernel_time(hw, op.flops, op.hbm_bytes, op.memory_class, rows)
