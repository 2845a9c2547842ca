"""What the PRESERVE planner decides: per allreduce, which tensors to prefetch, how much, in what order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llmtwin.physics.graph import TensorKind


@dataclass(frozen=True, slots=True)
class PrefetchItem:
    """One prefetch op on the side stream."""

    order: int
    """Position on the side stream within its window (0 = issued first)."""
    tensor: str
    kind: TensorKind
    consumer: int
    """Index (in the step's op list) of the op that reads the tensor."""
    consumer_name: str
    offset_bytes: float
    """First byte of the tensor this op fetches (> 0 when an earlier window fetched the start)."""
    bytes: float
    tensor_bytes: float
    start_s: float
    """Planned start on the side stream, seconds after the allreduce starts."""
    end_s: float
    saving_s: float
    """Planned reduction of the consumer's time, seconds."""

    @property
    def partial(self) -> bool:
        return self.offset_bytes + self.bytes < self.tensor_bytes * (1 - 1e-9)

    def to_dict(self) -> dict[str, Any]:
        return {
            "order": self.order,
            "tensor": self.tensor,
            "kind": self.kind,
            "consumer": self.consumer,
            "consumer_name": self.consumer_name,
            "offset_bytes": self.offset_bytes,
            "bytes": self.bytes,
            "tensor_bytes": self.tensor_bytes,
            "partial": self.partial,
            "start_s": self.start_s,
            "end_s": self.end_s,
            "saving_s": self.saving_s,
        }


@dataclass(frozen=True, slots=True)
class PrefetchWindow:
    """The prefetches issued when one allreduce starts."""

    allreduce: int
    """Index of the allreduce op."""
    allreduce_name: str
    layer: int
    window_ops: tuple[int, ...]
    """The allreduce and the elementwise ops the window extends over."""
    window_s: float
    """How long the window lasts with the side stream busy throughout."""
    window_bytes: float
    """Bytes the side stream could move in the window (HBM share times duration)."""
    live_bytes: float
    """L2 held by the activations and buffers of the ops from the allreduce to the last
    candidate consumer."""
    resident_bytes: float
    """Earlier prefetches still unconsumed when the window starts."""
    l2_free_bytes: float
    """L2 capacity minus live data, earlier unconsumed prefetches and the reserve."""
    budget_bytes: float | None
    stretch_s: float
    """Delay the prefetches cause on the main stream (``shared`` contention)."""
    items: tuple[PrefetchItem, ...]

    @property
    def prefetched_bytes(self) -> float:
        return sum(it.bytes for it in self.items)

    @property
    def saving_s(self) -> float:
        return sum(it.saving_s for it in self.items) - self.stretch_s

    def to_dict(self) -> dict[str, Any]:
        return {
            "allreduce": self.allreduce,
            "allreduce_name": self.allreduce_name,
            "layer": self.layer,
            "window_ops": list(self.window_ops),
            "window_s": self.window_s,
            "window_bytes": self.window_bytes,
            "live_bytes": self.live_bytes,
            "resident_bytes": self.resident_bytes,
            "l2_free_bytes": self.l2_free_bytes,
            "budget_bytes": self.budget_bytes,
            "prefetched_bytes": self.prefetched_bytes,
            "stretch_s": self.stretch_s,
            "saving_s": self.saving_s,
            "items": [it.to_dict() for it in self.items],
        }


@dataclass(frozen=True, slots=True)
class PrefetchPlan:
    """The plan for one step."""

    l2_capacity: float
    windows: tuple[PrefetchWindow, ...]
    declined: str = ""
    """Why the planner inserted nothing although windows existed (empty when it did not decline)."""

    @property
    def prefetched_bytes(self) -> float:
        return sum(w.prefetched_bytes for w in self.windows)

    @property
    def items(self) -> tuple[PrefetchItem, ...]:
        return tuple(it for w in self.windows for it in w.items)

    def l2_bytes(self) -> dict[int, float]:
        """Op index -> bytes of its read-only operands planned to be read from L2."""
        out: dict[int, float] = {}
        for it in self.items:
            out[it.consumer] = out.get(it.consumer, 0.0) + it.bytes
        return out
