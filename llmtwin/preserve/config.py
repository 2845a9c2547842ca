"""Every modelling choice the PRESERVE paper leaves open, as one parameter with a documented default.

The paper (arXiv 2501.08192) is only partly available; see docs/preserve.md for why each default
was chosen. The planner, the two-stream timeline and the baselines all read their choices from
these dataclasses, so a sensitivity study is a matter of ``dataclasses.replace``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from llmtwin.errors import ConfigurationError

Priority = Literal["nearest_first", "kv_first", "weights_first"]
"""Order in which a window's candidate tensors are prefetched."""
Contention = Literal["idle_only", "shared"]
"""How the prefetch stream and the main stream share HBM (see :mod:`llmtwin.preserve.channel`)."""

PRIORITIES: tuple[Priority, ...] = ("nearest_first", "kv_first", "weights_first")
CONTENTIONS: tuple[Contention, ...] = ("idle_only", "shared")


@dataclass(frozen=True, slots=True)
class PreserveConfig:
    """The PRESERVE planner's open choices. Bytes and seconds unless named otherwise."""

    budget_bytes: float | None = None
    """The paper's "predefined upper limit" on bytes prefetched in one window; ``None`` = no cap
    beyond the L2 space that is free (the value the paper used is not known)."""
    extend_window: bool = True
    """Let the prefetch run on over the elementwise and norm ops that directly follow the
    allreduce (residual add, RMSNorm): they read little from HBM and carry no prefetchable
    operand, so the prefetch can share HBM with them. ``False`` = the allreduce only."""
    priority: Priority = "nearest_first"
    """``nearest_first``: in the order the consumers run (the first consumer's data arrives
    first, so no consumer waits); ``kv_first`` / ``weights_first``: one tensor class first."""
    partial: bool = True
    """Prefetch the first part of a tensor that does not fit whole (``npu_prefetch`` has
    ``max_size``/``offset``); ``False`` = whole tensors only, first fit in priority order."""
    horizon_windows: int = 1
    """How far a window looks for consumers: up to the next ``horizon_windows``-th allreduce
    (1 = the ops between this allreduce and the next, the dependency-barrier scope)."""
    contention: Contention = "idle_only"
    """``idle_only``: the main stream's own HBM traffic is served first and the prefetch uses the
    idle HBM time; ``shared``: both streams get equal bandwidth while both move data, so the
    main-stream op is stretched by its own HBM time and the prefetch moves at the full rate."""
    prefetch_bandwidth_fraction: float = 1.0
    """Prefetch DMA bandwidth as a fraction of what a weight-streaming kernel reaches in the
    device model (``hbm_bandwidth * efficiency.hbm * efficiency.stream_realised``)."""
    prefetch_op_overhead_s: float = 2.0e-6
    """Side-stream time per prefetch op before bytes flow (task issue and completion event).
    Assumption: no public measurement of an Ascend CMO task's latency was found."""
    min_prefetch_bytes: float = 16384.0
    """Smallest prefetch worth issuing (CANN: GM moves above 16 KB reach full bandwidth)."""
    l2_reserved_bytes: float = 0.0
    """L2 bytes kept out of the planner's reach on top of the live data it computes."""
    streaming_allocates: bool = False
    """``False``: lines that the main stream streams from HBM bypass L2 (``SetL2CacheHint``-like
    hints), so prefetched lines survive until read. ``True``: they allocate in an LRU L2 and can
    evict prefetched lines before their consumer runs."""

    def __post_init__(self) -> None:
        if self.budget_bytes is not None and self.budget_bytes < 0:
            raise ConfigurationError(f"prefetch budget must be >= 0 bytes, got {self.budget_bytes}")
        if self.priority not in PRIORITIES:
            raise ConfigurationError(f"priority {self.priority!r} is not one of {', '.join(PRIORITIES)}")
        if self.contention not in CONTENTIONS:
            raise ConfigurationError(f"contention {self.contention!r} is not one of {', '.join(CONTENTIONS)}")
        if self.horizon_windows < 1:
            raise ConfigurationError(f"horizon_windows must be >= 1, got {self.horizon_windows}")
        if not 0.0 < self.prefetch_bandwidth_fraction <= 1.0:
            raise ConfigurationError(
                f"prefetch_bandwidth_fraction must be in (0, 1], got {self.prefetch_bandwidth_fraction}"
            )
        for name in ("prefetch_op_overhead_s", "min_prefetch_bytes", "l2_reserved_bytes"):
            if getattr(self, name) < 0:
                raise ConfigurationError(f"{name} must be >= 0, got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class FusedConfig:
    """The fused GEMM+allreduce baseline (MC2 / FLUX-style): the row-parallel GEMM before an
    allreduce is split into column chunks whose allreduce starts as soon as the chunk is done."""

    max_chunks: int = 8
    """The fused kernel picks the best chunk count among powers of two up to this."""
    hides_alpha: bool = True
    """The allreduce's fixed latency (synchronisation, launch) runs while the GEMM computes, as
    one fused kernel with pre-registered buffers allows; ``False`` = it follows the last chunk."""

    def __post_init__(self) -> None:
        if self.max_chunks < 1:
            raise ConfigurationError(f"fused max_chunks must be >= 1, got {self.max_chunks}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class WorkingSetConfig:
    """How an op's reused operands occupy L2 (the effect of L2 size without any prefetch)."""

    gemm_tile_n: int = 256
    """Output columns per GEMM tile: the activation operand is read once per column tile, from L2
    when it fits and from HBM again when it does not (catlass' default L1 tile is 128 x 256)."""

    def __post_init__(self) -> None:
        if self.gemm_tile_n < 1:
            raise ConfigurationError(f"gemm_tile_n must be >= 1, got {self.gemm_tile_n}")
