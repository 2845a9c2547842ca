"""Small builders for the PRESERVE tests: a short Llama-like model on a catalog device."""

from __future__ import annotations

from dataclasses import replace

from llmtwin.hardware import HardwareCatalog, HardwareSpec
from llmtwin.models import ModelSpec
from llmtwin.physics.overhead import NO_ENGINE, EngineCatalog, EngineSpec
from llmtwin.physics.precision import Precision
from llmtwin.physics.step import StepModel

MIB = float(2**20)


def tiny_model(layers: int = 3) -> ModelSpec:
    """Llama-3-8B's layer shape with only a few layers, so a whole step is a few dozen ops."""
    return ModelSpec(
        name="tiny-llama", hidden=4096, layers=layers, heads=32, kv_heads=8, head_dim=128,
        intermediate=14336, vocab=32000, gated_mlp=True, activation="silu", norm="rmsnorm",
        positional="rope", tied_embeddings=False, max_context=131072,
    )  # fmt: skip


def ascend(l2_mib: float | None = None) -> HardwareSpec:
    hw = HardwareCatalog().get("ascend-910b2")
    return hw if l2_mib is None else replace(hw, l2_capacity=l2_mib * MIB)


def engine_profile(name: str) -> EngineSpec:
    """``none``, a shipped profile, or ``launch-<us>``: only a per-kernel dispatch cost of that many
    microseconds plus 1 ms serial per iteration (partly launch-bound for the tiny model's decode)."""
    if name.startswith("launch-"):
        return EngineSpec(name=name, iteration_overhead_s=1e-3, per_kernel_launch_s=float(name[7:]) * 1e-6)
    return EngineCatalog().get(name)


def step_model(
    tp: int = 4,
    prec: str = "int8",
    layers: int = 3,
    hw: HardwareSpec | None = None,
    engine: EngineSpec = NO_ENGINE,
) -> StepModel:
    return StepModel(hw or ascend(), tiny_model(layers), tp, Precision.parse(prec), engine)
