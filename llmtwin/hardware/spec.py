"""Typed description of one accelerator. All fields are SI units (bytes, seconds, FLOP/s).

Spec-sheet figures (peaks, capacities) and efficiency parameters (what fraction of a peak real
kernels reach, fixed per-kernel costs) are kept apart: the first come from vendor data, the
second are fitted by ``llmtwin calibrate`` and carry over to hardware that was never measured.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from llmtwin.physics.bands import BandTable

Topology = Literal["nvswitch", "full_mesh", "torus2d", "torus3d", "ring"]


@dataclass(frozen=True, slots=True)
class Efficiency:
    """How close real kernels come to the spec-sheet peaks. Dimensionless unless named.

    Two kinds of field. *Device measurements* (``gemm_max``, ``hbm``, ``l2``,
    ``allreduce_bus_efficiency``, ``allreduce_alpha_s``, ``p2p_*``) come from third-party
    microbenchmarks of that device and are set in its hardware file with a source. *Kernel-shape
    parameters* (the rest) describe how transformer-layer kernels behave relative to those
    measurements; they are fitted by ``llmtwin calibrate`` on measured operator timings and carry
    over to devices that were never measured. The defaults are the A100 fit (see
    docs/device-model.md, which gives every equation).
    """

    # -- device measurements --------------------------------------------------------------------
    gemm_max: float = 0.80
    """Fraction of peak dense compute the best-shaped large GEMM reaches (MAMF-style benchmark)."""
    hbm: float = 0.85
    """Fraction of peak HBM bandwidth a large streaming read reaches (STREAM-style benchmark)."""
    l2: float = 0.80
    """Fraction of peak L2 bandwidth a kernel reading from L2 reaches."""
    allreduce_bus_efficiency: float = 0.77
    """Plateau allreduce bus bandwidth (nccl-tests busbw at large messages) as a fraction of the
    per-direction link bandwidth; for group sizes ``allreduce_bus_efficiency_by_world`` does not
    cover."""
    allreduce_bus_efficiency_by_world: tuple[tuple[int, float], ...] = ()
    """The same plateau fraction where it depends on the group size: ``(world, efficiency)``
    pairs, worlds increasing from 2. A group of ``n`` devices takes the entry with the largest
    world <= ``n`` (see :meth:`allreduce_bus_efficiency_at`). On Hopper NCCL reduces in the
    NVSwitch (NVLS) only from 5 GPUs, so 2-4 GPUs run at ring speed."""
    allreduce_alpha_s: float = 20.0e-6
    """Latency of one small-message allreduce (synchronisation, protocol) on top of the ring's
    per-hop link latency, seconds: a small-message time measured over n devices gives
    ``t_small - 2 (n - 1) * link.latency_s``."""
    p2p_alpha_s: float = 10.0e-6
    """Latency term of one point-to-point transfer (send/recv, KV copy), seconds."""
    p2p_efficiency: float = 0.80
    """Achieved point-to-point bandwidth as a fraction of the per-direction link bandwidth."""
    scale_out_efficiency: float = 0.80
    """Achieved point-to-point bandwidth across nodes as a fraction of the scale-out NIC's
    per-direction bandwidth (``link.scale_out_gb_s_per_direction``): what the cluster's network
    really delivers to one GPU (switches, congestion, proxy threads), not a kernel property."""
    scale_out_alpha_s: float = 10.0e-6
    """Latency of one traversal of the scale-out network (NIC, switch, NCCL proxy), seconds. A
    point-to-point transfer crosses once; a ring allreduce across nodes twice (reduce-scatter and
    all-gather), on top of ``allreduce_alpha_s``."""
    scale_out_ring_efficiency: float = 0.75
    """Bandwidth a ring allreduce reaches across nodes, as a fraction of the point-to-point rate
    (``scale_out_efficiency``) of each NIC it uses."""
    scale_out_rails: float = 8.0
    """NICs per node a collective spanning nodes drives in parallel (one ring per NIC): a group
    with ``r`` devices in each node uses ``min(r, scale_out_rails)`` of them. DGX/HGX nodes have
    one NIC per GPU; a fit to a cluster's measurements may find fewer."""

    # -- kernel-shape parameters (fitted; defaults = A100 fit) ----------------------------------
    gemm_realised: float = 0.8591
    """Fraction of ``gemm_max`` that the GEMM shapes of a transformer layer reach when compute-bound."""
    stream_realised: float = 0.9699
    """Fraction of ``hbm`` that a weight-streaming (memory-bound) GEMM reaches."""
    roofline_sharpness: float = 1.377
    """Exponent p of the smooth maximum (t_c^p + t_m^p)^(1/p) joining compute and memory time:
    large p is the hard roofline, small p a gradual hand-over near the ridge point."""
    gemm_overhead_s: float = 5.015e-06
    """Fixed time of one GEMM kernel (launch latency, prologue, epilogue, tail), seconds."""
    kernel_overhead_s: float = 1.668e-06
    """Fixed time of one memory-bound kernel (norm, activation, residual add), seconds."""
    norm_bw: float = 0.4431
    """Fraction of ``hbm`` x peak bandwidth a normalisation kernel reaches (two passes, fp32 math)."""
    activation_bw: float = 0.5888
    """Fraction of ``hbm`` x peak bandwidth the MLP activation (SiLU x up, GELU) reaches."""
    rope_bw: float = 0.5306
    """Fraction of ``hbm`` x peak bandwidth the rotary-embedding kernel reaches."""
    add_bw: float = 1.176
    """Fraction of ``hbm`` x peak bandwidth a residual add (pure streaming) reaches."""
    embedding_bw: float = 0.18
    """Fraction of ``hbm`` x peak bandwidth the token-embedding gather reaches."""
    row_parallel_rows_per_unit: float = 1.179
    """Rows per compute unit (SM, CU, AI core) a row-per-block kernel (norm, activation) must
    have to fill the device; below ``row_parallel_rows_per_unit x compute_units`` rows the kernel
    takes the time of one wave regardless of rows."""
    attention_realised: float = 0.64
    """Fraction of ``gemm_max`` a fused (flash) prefill-attention kernel reaches on long sequences
    at head dimension 128, all compute units busy (docs/device-model.md, section 2b)."""
    attention_tile_queries: float = 128.0
    """Query rows per thread block of the prefill kernel (one block per sequence, head and query
    tile: what fills the device)."""
    attention_tile_keys: float = 64.0
    """Key columns per inner tile of the prefill kernel: the causal diagonal wastes half a tile
    per query."""
    attention_ramp_keys: float = 64.0
    """Mean keys per query at which the prefill kernel reaches half its long-sequence efficiency
    (fixed work per query tile: loading Q, the online-softmax rescale, writing O)."""
    attention_head_dim_half: float = 42.7
    """Head dimension at which the prefill kernel's work per loaded tile is half its asymptote:
    efficiency ~ d / (d + this), relative to d = 128 (d = 64 runs at 0.8 of d = 128)."""
    decode_attention_bw: float = 0.80
    """Fraction of ``hbm`` x peak bandwidth a paged decode kernel reads KV blocks at (gathered
    blocks, not one stream)."""
    kv_block_tokens: float = 16.0
    """Tokens per KV-cache block of a paged kernel (vLLM's default): each sequence's last block
    is read whole."""
    decode_gqa_rereads: float = 0.0
    """How many times (per extra query head of a GQA group) the decode kernel re-reads the group's
    KV through L2: 0 for a kernel that shares each KV read across the group (FlashInfer,
    FlashDecoding, FlashAttention's decode path: what vLLM and SGLang run today), 1 for one thread
    block per query head (vLLM's original paged-attention kernel), which makes GQA decode
    L2-bound once the group exceeds the device's L2:HBM bandwidth ratio."""
    decode_attention_unit_s: float = 2.0e-6
    """Fixed time of one (sequence, KV head) work unit of the decode kernel (block-table walk,
    softmax reduction across partitions, write-out), per wave of compute units, seconds."""
    allreduce_realised: float = 0.8309
    """Fraction of the plateau bus bandwidth that allreduces of serving-sized messages (up to
    tens of MB, issued from the framework) reach."""
    allreduce_sharpness: float = 0.7715
    """Exponent q of the smooth sum (alpha^q + t_bw^q)^(1/q) of latency and bandwidth terms of a
    collective (q = 1 is the classic alpha-beta sum)."""

    def replace_numbers(self, values: Mapping[str, float]) -> Efficiency:
        """A copy with the named number fields replaced (what a hardware file or a fit sets).

        ``dataclasses.replace(eff, **values)`` does the same, but a type checker cannot tell that
        ``values`` leaves the by-world table alone.
        """
        changes: dict[str, Any] = dict(values)
        return dataclasses.replace(self, **changes)

    def allreduce_bus_efficiency_at(self, world: int) -> float:
        """Plateau allreduce bus efficiency of a group of ``world`` devices: the
        ``allreduce_bus_efficiency_by_world`` entry with the largest world <= ``world``, else
        ``allreduce_bus_efficiency``."""
        best_world, best = 0, self.allreduce_bus_efficiency
        for w, eff in self.allreduce_bus_efficiency_by_world:
            if best_world < w <= world:
                best_world, best = w, eff
        return best


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
    host_cpu_speed: float = 1.0
    """Single-thread speed of the host CPU that drives the devices (a serving framework's
    scheduler and kernel dispatch run there), relative to the DGX A100's 2 x AMD EPYC 7742."""
    host_cpu: str = ""
    """The host CPU, in words."""
    bands: BandTable = field(default_factory=BandTable)
    """Uncertainty bands of the device physics per op class and region (llmtwin.physics.bands):
    its own calibration's, else the reference device's."""
    transfer_uncertainty: float = 0.0
    """Relative uncertainty added to the bands when they come from another device's calibration
    (0 for a device calibrated on its own measurements)."""
    compute_units: int = 100
    """Independent units a kernel's thread blocks spread over: SMs (NVIDIA), CUs (AMD), AI cores
    (Ascend), TensorCores (TPU). Decides when a small kernel cannot fill the device."""
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

        A dtype the device has no units for runs as the 16-bit type it is up-converted to (fp8
        or int8 on a device without those units runs at the bf16/fp16 rate, never at the rate of
        the other 8-bit type: fp8 and int8 are not interchangeable); int4 runs on int8 units where
        they exist. That is what real kernels do.
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
    "fp8": ("fp8", "bf16", "fp16"),
    "int8": ("int8", "bf16", "fp16"),
    "int4": ("int4", "int8", "bf16", "fp16"),
}
