"""The roofline of GEMMs and memory-bound kernels: a smooth maximum plus a fixed per-kernel cost.

    GEMM:               t = t_gemm0 + (t_c^p + t_m^p)^(1/p)
    memory-bound op:    t = t_kern0 + (t_c^p + t_m^p)^(1/p)
    t_c = FLOPs / (peak[dtype] * gemm_max * realised)
    t_m = (hbm_bytes - l2_bytes) / (BW_hbm * hbm * class_fraction) * wave + l2_bytes / (BW_l2 * l2)

``p`` (roofline_sharpness) makes the hand-over between the compute- and memory-bound regimes
gradual, as measured GEMMs show near the ridge point; the smooth maximum is never below the hard
one, so no op is ever faster than its FLOPs at peak or its bytes at peak bandwidth. ``wave`` is
max(1, row_parallel_rows_per_unit x compute_units / rows) for row-per-block kernels (norms,
activation): with fewer rows than the device has cores, the kernel still takes one wave. Every
symbol is an :class:`~llmtwin.hardware.spec.Efficiency` field; docs/device-model.md lists their
sources. Attention (:mod:`llmtwin.physics.attention`) and collectives
(:mod:`llmtwin.physics.collectives`) build on these primitives; :mod:`llmtwin.physics.op_time`
dispatches an op to the right one.

The formulas are plain arithmetic so the calibration can evaluate them on numpy arrays of
thousands of measured shapes with the very code the simulator runs on floats.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import numpy.typing as npt

from llmtwin.hardware.spec import Efficiency, HardwareSpec
from llmtwin.physics.graph import MemoryClass

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


def memory_kernel_time(
    hw: HardwareSpec, flops: Num, hbm_bytes: Num, memory_class: MemoryClass, rows: Num | None = None
) -> Num:
    """Seconds for a memory-bound kernel (norm, activation, rope, add, embedding).

    ``rows`` (row-per-block kernels only): below ``row_parallel_rows_per_unit x compute_units``
    rows the kernel runs one
    partial wave, as slow per row as a full one, so its memory time stops shrinking.
    """
    e = hw.efficiency
    t_m = hbm_bytes / (hw.hbm_bandwidth * class_bandwidth_fraction(e, memory_class))
    if rows is not None:
        t_m = t_m * hard_max(e.row_parallel_rows_per_unit * hw.compute_units / rows, 1.0 + 0.0 * rows)
    t_c = flops / (hw.compute_peak("fp16") * VECTOR_PEAK_FRACTION)
    return e.kernel_overhead_s + smooth_max(t_c, t_m, e.roofline_sharpness)
