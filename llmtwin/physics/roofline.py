"""Time of one op on one device: roofline with size-dependent efficiency plus a fixed cost.

    t = max(t_compute, t_memory) + kernel_overhead
    t_compute = FLOPs / (peak[dtype] * eff_compute)
    t_memory  = (hbm_bytes - l2_bytes) / (BW_hbm * eff_hbm) + l2_bytes / (BW_l2 * eff_l2)

GEMM compute efficiency grows with the GEMM's size (small GEMMs cannot fill every core:
tile and wave quantisation); see docs/device-model.md for the fitted shape.
"""

from __future__ import annotations

from llmtwin.hardware.spec import HardwareSpec
from llmtwin.physics.collectives import collective_time
from llmtwin.physics.graph import Op
from llmtwin.physics.precision import Precision


def gemm_efficiency(hw: HardwareSpec, m: int, n: int, k: int) -> float:
    """Fraction of peak compute a GEMM of this shape reaches."""
    e = hw.efficiency
    return e.gemm_max * (m / (m + e.gemm_m_half_tokens)) * (n / (n + e.gemm_n_half))


def memory_time(hw: HardwareSpec, hbm_bytes: float, l2_bytes: float = 0.0) -> float:
    """Seconds to move ``hbm_bytes`` of which ``l2_bytes`` are already in L2 (prefetched)."""
    e = hw.efficiency
    from_hbm = max(0.0, hbm_bytes - l2_bytes)
    t = 0.0
    if from_hbm > 0:
        t += (from_hbm + e.hbm_half_bytes) / (hw.hbm_bandwidth * e.hbm)
    if l2_bytes > 0:
        t += l2_bytes / (hw.l2_bandwidth * e.l2)
    return t


def compute_time(hw: HardwareSpec, op: Op, prec: Precision) -> float:
    if op.flops <= 0:
        return 0.0
    e = hw.efficiency
    if op.kind == "gemm" and op.gemm_mnk is not None:
        peak = hw.compute_peak(prec.compute_dtype) * gemm_efficiency(hw, *op.gemm_mnk)
    elif op.kind == "attention":
        # Attention matmuls run at the activations' (or KV's) precision in practice.
        peak = hw.compute_peak(prec.activations) * e.attention
    else:
        # Vector units: an elementwise op is always memory-bound; charge ~1/16 of tensor peak.
        peak = hw.compute_peak("fp16") / 16.0
    return op.flops / peak


def op_time(hw: HardwareSpec, op: Op, prec: Precision, tp: int, l2_bytes: float = 0.0) -> float:
    """Seconds one op takes on one device of a TP group of ``tp``; ``l2_bytes`` of its read-only
    operands are served from L2."""
    if op.kind == "collective":
        assert op.collective is not None
        return collective_time(hw, op.collective, tp, op.message_bytes)
    t = max(compute_time(hw, op, prec), memory_time(hw, op.hbm_bytes, l2_bytes))
    return t + hw.efficiency.kernel_overhead_s
