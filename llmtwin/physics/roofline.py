"""Time of one op on one device: a smooth roofline plus a fixed per-kernel cost.

    GEMM / attention:   t = t_gemm0 + (t_c^p + t_m^p)^(1/p)
    memory-bound op:    t = t_kern0 + (t_c^p + t_m^p)^(1/p)
    t_c = FLOPs / (peak[dtype] * gemm_max * realised)
    t_m = (hbm_bytes - l2_bytes) / (BW_hbm * hbm * class_fraction) * wave + l2_bytes / (BW_l2 * l2)

``p`` (roofline_sharpness) makes the hand-over between the compute- and memory-bound regimes
gradual, as measured GEMMs show near the ridge point; the smooth maximum is never below the hard
one, so no op is ever faster than its FLOPs at peak or its bytes at peak bandwidth. ``wave`` is
max(1, row_parallel_rows / rows) for row-per-block kernels (norms, activation): with fewer rows
than the device has cores, the kernel still takes one wave. Every symbol is an
:class:`~llmtwin.hardware.spec.Efficiency` field; docs/device-model.md lists their sources.

The formulas are plain arithmetic so the calibration can evaluate them on numpy arrays of
thousands of measured shapes with the very code the simulator runs on floats.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import numpy.typing as npt

from llmtwin.hardware.spec import Efficiency, HardwareSpec
from llmtwin.physics.collectives import collective_time
from llmtwin.physics.graph import MemoryClass, Op
from llmtwin.physics.precision import Precision

Num = TypeVar("Num", float, npt.NDArray[np.float64])
"""A time or size: a float in the simulator, an array of measured shapes in the calibration."""

VECTOR_PEAK_FRACTION = 1.0 / 16.0
"""Non-tensor (vector) throughput as a fraction of dense tensor peak; only bounds elementwise
FLOPs, which never decide an op's time."""


def smooth_max(a: Num, b: Num, p: float) -> Num:
    """(a^p + b^p)^(1/p): >= max(a, b), equal to it as p grows; a + b at p = 1."""
    out: Num = (a**p + b**p) ** (1.0 / p)
    return out


def hard_max(a: Num, b: Num) -> Num:
    """max(a, b) written so that it works element-wise on arrays too."""
    return (a + b + abs(a - b)) * 0.5


def class_bandwidth_fraction(eff: Efficiency, memory_class: MemoryClass) -> float:
    """Fraction of peak HBM bandwidth a kernel of this class streams at (never above 1)."""
    fraction = {
        "stream": eff.stream_realised,
        "norm": eff.norm_bw,
        "activation": eff.activation_bw,
        "rope": eff.rope_bw,
        "add": eff.add_bw,
        "embedding": eff.embedding_bw,
    }[memory_class]
    return min(1.0, eff.hbm * fraction)


def memory_time(hw: HardwareSpec, hbm_bytes: Num, l2_bytes: Num, bw_fraction: float) -> Num:
    """Seconds to move ``hbm_bytes`` of which ``l2_bytes`` are already in L2 (prefetched)."""
    from_hbm = hbm_bytes - l2_bytes
    return from_hbm / (hw.hbm_bandwidth * bw_fraction) + l2_bytes / (hw.l2_bandwidth * hw.efficiency.l2)


def gemm_peak(hw: HardwareSpec, dtype: str) -> float:
    """FLOP/s a compute-bound transformer GEMM reaches at ``dtype``."""
    e = hw.efficiency
    return hw.compute_peak(dtype) * e.gemm_max * e.gemm_realised


def gemm_time(hw: HardwareSpec, flops: Num, hbm_bytes: Num, l2_bytes: Num, dtype: str) -> Num:
    """Seconds for a GEMM (or fused attention) of ``flops`` moving ``hbm_bytes``."""
    e = hw.efficiency
    t_c = flops / gemm_peak(hw, dtype)
    t_m = memory_time(hw, hbm_bytes, l2_bytes, class_bandwidth_fraction(e, "stream"))
    return e.gemm_overhead_s + smooth_max(t_c, t_m, e.roofline_sharpness)


def attention_time(hw: HardwareSpec, flops: Num, hbm_bytes: Num, l2_bytes: Num, dtype: str) -> Num:
    """Seconds for a fused attention kernel: a GEMM whose compute runs at ``attention_realised``."""
    e = hw.efficiency
    t_c = flops / (hw.compute_peak(dtype) * e.gemm_max * e.attention_realised)
    t_m = memory_time(hw, hbm_bytes, l2_bytes, class_bandwidth_fraction(e, "stream"))
    return e.gemm_overhead_s + smooth_max(t_c, t_m, e.roofline_sharpness)


def memory_kernel_time(
    hw: HardwareSpec, flops: Num, hbm_bytes: Num, memory_class: MemoryClass, rows: Num | None = None
) -> Num:
    """Seconds for a memory-bound kernel (norm, activation, rope, add, embedding).

    ``rows`` (row-per-block kernels only): below ``row_parallel_rows`` the kernel runs one
    partial wave, as slow per row as a full one, so its memory time stops shrinking.
    """
    e = hw.efficiency
    t_m = hbm_bytes / (hw.hbm_bandwidth * class_bandwidth_fraction(e, memory_class))
    if rows is not None:
        t_m = t_m * hard_max(e.row_parallel_rows / rows, 1.0 + 0.0 * rows)
    t_c = flops / (hw.compute_peak("fp16") * VECTOR_PEAK_FRACTION)
    return e.kernel_overhead_s + smooth_max(t_c, t_m, e.roofline_sharpness)


def op_time(hw: HardwareSpec, op: Op, prec: Precision, tp: int, l2_bytes: float = 0.0) -> float:
    """Seconds one op takes on one device of a TP group of ``tp``; ``l2_bytes`` of its read-only
    operands are served from L2."""
    if op.kind == "collective":
        assert op.collective is not None
        return collective_time(hw, op.collective, tp, op.message_bytes)
    if op.kind == "gemm":
        return gemm_time(hw, op.flops, op.hbm_bytes, l2_bytes, prec.compute_dtype)
    if op.kind == "attention":
        # Attention matmuls run at the activations' precision (KV is up-converted if narrower).
        return attention_time(hw, op.flops, op.hbm_bytes, l2_bytes, prec.activations)
    rows = float(op.rows) if op.rows > 0 else None
    return memory_kernel_time(hw, op.flops, op.hbm_bytes, op.memory_class, rows)
