"""Typed description of one accelerator. All fields are SI units (bytes, seconds, FLOP/s).

Spec-sheet figures (peaks, capacities) and efficiency parameters (what fraction of a peak real
kernels reach, fixed per-kernel costs) are kept apart: the first come from vendor data, the
second are fitted by ``llmtwin calibrate`` and carry over to hardware that was never measured.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Topology = Literal["nvswitch", "full_mesh", "torus2d", "torus3d", "ring"]


@dataclass(frozen=True, slots=True)
class Efficiency:
    """Fractions of peak that real kernels reach, and fixed costs. Dimensionless unless named.

    Defaults are the shape fitted on measured A100 operator timings (see docs/device-model.md);
    a hardware file overrides any of them.
    """

    gemm_max: float = 0.80
    """Fraction of peak dense compute a large GEMM reaches (MAMF-style measurement)."""
    gemm_m_half_tokens: float = 64.0
    """Rows (tokens) at which a GEMM's compute efficiency is half of ``gemm_max``: small GEMMs
    cannot fill the machine (tile and wave quantisation)."""
    gemm_n_half: float = 1024.0
    """Output columns at which compute efficiency is half of ``gemm_max`` (narrow TP shards)."""
    hbm: float = 0.85
    """Fraction of peak HBM bandwidth a large streaming read reaches."""
    hbm_half_bytes: float = 4.0e6
    """Transfer size (bytes) at which a kernel reaches half its streaming bandwidth."""
    l2: float = 0.80
    """Fraction of peak L2 bandwidth a kernel reading from L2 reaches."""
    attention: float = 0.55
    """Fraction of peak compute a fused (flash) attention kernel reaches in prefill."""
    kernel_overhead_s: float = 5.0e-6
    """Fixed cost of one kernel (launch, prologue, tail), seconds."""
    allreduce_alpha_s: float = 20.0e-6
    """Latency term of one allreduce (synchronisation, protocol), seconds."""
    allreduce_bus_efficiency: float = 0.77
    """Achieved allreduce bus bandwidth as a fraction of the per-direction link bandwidth."""
    p2p_alpha_s: float = 10.0e-6
    """Latency term of one point-to-point transfer (send/recv, KV copy), seconds."""
    p2p_efficiency: float = 0.80
    """Achieved point-to-point bandwidth as a fraction of the per-direction link bandwidth."""


@dataclass(frozen=True, slots=True)
class LinkSpec:
    """Scale-up interconnect of one device."""

    topology: Topology
    bandwidth_per_direction: float
    """Aggregate bytes/s one device can send (and, separately, receive) over the scale-up fabric."""
    peer_bandwidth_per_direction: float
    """Bytes/s over one direct link to one peer (full mesh) or one torus neighbour."""
    latency_s: float
    """One-hop link latency, seconds."""
    devices_per_node: int
    """Devices in one scale-up domain (NVSwitch node, HCCS mesh, torus slice)."""
    scale_out_bandwidth_per_direction: float = 50.0e9
    """Bytes/s per device to other nodes (NIC), used when a group spans nodes."""


@dataclass(frozen=True, slots=True)
class HardwareSpec:
    """One accelerator: spec-sheet figures, efficiencies, price and the source of every figure."""

    name: str
    description: str
    peak_flops: dict[str, float]
    """Dense peak FLOP/s (or OP/s) per compute dtype: bf16, fp16, fp8, int8."""
    hbm_capacity: float
    """HBM capacity, bytes."""
    hbm_bandwidth: float
    """Peak HBM bandwidth, bytes/s."""
    l2_capacity: float
    """Last-level on-chip cache capacity, bytes."""
    l2_bandwidth: float
    """Peak L2 read bandwidth, bytes/s."""
    link: LinkSpec
    efficiency: Efficiency = field(default_factory=Efficiency)
    usd_per_hour: float | None = None
    """Cloud price per device-hour, where a public figure exists."""
    usd_purchase: float | None = None
    """Purchase price per device, where a public figure exists."""
    tdp_w: float | None = None
    """Thermal design power, watts."""
    sources: dict[str, str] = field(default_factory=dict)
    """Dotted field name -> source (URL and tag) of that figure."""

    def compute_peak(self, dtype: str) -> float:
        """Peak FLOP/s for GEMMs whose operands are ``dtype``.

        A dtype the device has no units for runs at the best supported wider type (fp8 on an
        A100 runs as fp16 after up-conversion), which is what real kernels do.
        """
        for candidate in _FALLBACK.get(dtype, (dtype,)):
            peak = self.peak_flops.get(candidate)
            if peak:
                return peak
        return max(self.peak_flops.values())


_FALLBACK: dict[str, tuple[str, ...]] = {
    "fp32": ("fp32", "bf16", "fp16"),
    "bf16": ("bf16", "fp16"),
    "fp16": ("fp16", "bf16"),
    "fp8": ("fp8", "int8", "bf16", "fp16"),
    "int8": ("int8", "fp8", "bf16", "fp16"),
    "int4": ("int4", "int8", "bf16", "fp16"),
}
