"""The uncertainty band of one op and of one iteration (regions and tables: :mod:`llmtwin.physics.bands`).

* An op takes the band of its class and region in the hardware's table (GEMM rows for kernels,
  message bytes for an allreduce); attention takes the stated :data:`ATTENTION_BAND`.
* An iteration priced by an engine profile with bands takes the band of its phase, TP and size:
  those residuals already hold device and engine errors together.
* An iteration of pure device physics (engine ``none``) takes the time-weighted mean of its ops'
  bands: every op at the same edge at once, i.e. errors fully correlated (the conservative
  choice: the op-level residuals of one configuration are correlated, not independent).

A band from another device's calibration is widened by this device's ``transfer_uncertainty``.
"""

from __future__ import annotations

from collections.abc import Iterable

from llmtwin.hardware.spec import HardwareSpec
from llmtwin.physics.bands import ATTENTION_BAND, Band
from llmtwin.physics.graph import BatchShape, Op
from llmtwin.physics.overhead import EngineSpec


def op_band(hw: HardwareSpec, op: Op, tp: int, tokens: int) -> Band:
    """Band of one op of an iteration with ``tokens`` GEMM rows on a TP group of ``tp``."""
    if op.kind == "attention":
        band = ATTENTION_BAND
    elif op.kind == "collective":
        band = hw.bands.lookup("all_reduce", tp, int(op.message_bytes)) or Band()
    else:
        key = "gemm" if op.kind == "gemm" else op.memory_class
        band = hw.bands.lookup(key, tp, tokens) or Band()
    return band.widen(hw.transfer_uncertainty)


def device_band(hw: HardwareSpec, tp: int, tokens: int, weighted_ops: Iterable[tuple[Op, float]]) -> Band:
    """Time-weighted band of ops given as ``(op, seconds it contributes)``."""
    total = low = high = 0.0
    for op, seconds in weighted_ops:
        b = op_band(hw, op, tp, tokens)
        total += seconds
        low += seconds * b.low
        high += seconds * b.high
    return Band(low / total, high / total) if total > 0 else Band()


def iteration_band(hw: HardwareSpec, engine: EngineSpec, tp: int, shape: BatchShape) -> Band | None:
    """Band of a whole iteration from the engine's calibration, or ``None`` if it has none."""
    if not engine.bands:
        return None
    phase, size = (
        ("prefill", shape.prefill_tokens) if shape.prefill_tokens > 0 else ("decode", shape.decode_seqs)
    )
    band = engine.bands.lookup(phase, tp, max(1, size))
    if band is None:
        return None
    return band if hw.name == engine.fitted_on else band.widen(hw.transfer_uncertainty)
