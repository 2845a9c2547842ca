"""Fit an engine-overhead profile to end-to-end iteration times, on top of fixed device physics.

The device physics (already calibrated on operator timings) gives every op's GPU time; only the
:class:`~llmtwin.physics.overhead.EngineSpec` fields are fitted here, so what the framework adds is
kept apart from what the hardware does. Each measured configuration counts once (duplicate rows
are merged by their median) and every residual is a relative (log) error.

A measured decode time is the mean iteration over ``generated`` tokens whose context grows from
``prompt`` to ``prompt + generated``; it is predicted as the mean over :data:`DECODE_POINTS`
evenly spaced contexts (decode time is close to linear in context, so a few points are exact to
well under 1%).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy.optimize import least_squares

from llmtwin.calibrate.fit import LOSS_SCALE, unidentified
from llmtwin.calibrate.measured import IterationSample
from llmtwin.calibrate.opset import Array
from llmtwin.errors import CalibrationError
from llmtwin.hardware.spec import HardwareSpec
from llmtwin.physics.graph import BatchShape
from llmtwin.physics.overhead import EngineSpec, launch_pipeline
from llmtwin.physics.step import StepModel

DECODE_POINTS = 5
"""Contexts at which a mean decode iteration is evaluated."""

ENGINE_FIELDS: tuple[tuple[str, float, float, float, float], ...] = (
    ("iteration_overhead_s", 2e-3, 0.0, 0.2, 1e-3),
    ("per_kernel_launch_s", 20e-6, 0.0, 500e-6, 1e-6),
    ("per_sequence_overhead_s", 0.5e-3, 0.0, 0.05, 1e-3),
    ("per_sequence_vocab_s", 0.5e-9, 0.0, 1e-6, 1e-9),
    ("prefill_overhead_s", 10e-3, 0.0, 0.5, 1e-3),
    ("prefill_pair_bytes", 100.0, 0.0, 1e5, 1.0),
)
"""Fitted fields: name, start, lower and upper bound (SI units), and the unit the optimiser sees."""

Stages = tuple[list[float], list[float], list[float]]
Part = tuple[BatchShape, Stages]
"""One forward pass (or one decode context) and its device op times."""


@dataclass(frozen=True, slots=True)
class Config:
    """One measured configuration, its device-time parts and its measured time (median).

    A prefill is the sum of its forward passes (one, unless the batch of prompts exceeds the
    framework's ``max_batched_tokens``); a mean decode iteration is the mean over contexts.
    """

    phase: str
    """``prefill`` or ``decode``."""
    model: str
    tp: int
    prompt: int
    batch: int
    generated: int
    layers: int
    parts: tuple[Part, ...]
    measured_s: float
    hw: HardwareSpec
    vocab: int


def engine_with(base: EngineSpec, values: dict[str, float]) -> EngineSpec:
    """``base`` with the :data:`ENGINE_FIELDS` set from ``values`` (SI units)."""
    return replace(
        base,
        iteration_overhead_s=values["iteration_overhead_s"],
        per_kernel_launch_s=values["per_kernel_launch_s"],
        per_sequence_overhead_s=values["per_sequence_overhead_s"],
        per_sequence_vocab_s=values["per_sequence_vocab_s"],
        prefill_overhead_s=values["prefill_overhead_s"],
        prefill_pair_bytes=values["prefill_pair_bytes"],
    )


def predict_config(cfg: Config, engine: EngineSpec) -> float:
    """Seconds the engine plus device physics give for ``cfg``."""
    times = [
        engine.serial_s(cfg.hw, cfg.layers, cfg.vocab, shape)
        + launch_pipeline(b, layer, cfg.layers, a, engine.per_kernel_launch_s)
        for shape, (b, layer, a) in cfg.parts
    ]
    return sum(times) if cfg.phase == "prefill" else sum(times) / len(times)


def decode_contexts(prompt: int, generated: int) -> list[int]:
    """Evenly spaced contexts over the decode of ``generated`` tokens after a ``prompt``."""
    n = max(1, min(DECODE_POINTS, generated))
    if n == 1:
        return [prompt]
    return [round(prompt + i * (generated - 1) / (n - 1)) for i in range(n)]


def build_configs(
    samples: Sequence[IterationSample],
    step_model: Callable[[str, int], StepModel],
    max_batched_tokens: int = 0,
) -> list[Config]:
    """Merge duplicate rows and cost the device part of every configuration once; a batch of
    prompts beyond ``max_batched_tokens`` is priced as the framework ran it, in several passes."""
    prefill: dict[tuple[str, int, int, int], list[float]] = defaultdict(list)
    decode: dict[tuple[str, int, int, int, int], list[float]] = defaultdict(list)
    for s in samples:
        prefill[(s.model, s.tp, s.prompt, s.batch)].append(s.prefill_s)
        decode[(s.model, s.tp, s.prompt, s.batch, s.generated)].append(s.decode_s)
    splitter = EngineSpec(max_batched_tokens=max_batched_tokens)
    configs: list[Config] = []
    for (model, tp, prompt, batch), times in sorted(prefill.items()):
        sm = step_model(model, tp)
        passes = splitter.passes(BatchShape.prefill(batch, prompt))
        parts = tuple((p, sm.stage_times(p)) for p in passes)
        configs.append(
            Config("prefill", model, tp, prompt, batch, 0, sm.model.layers, parts, statistics.median(times),
                   sm.hw, sm.model.vocab)
        )  # fmt: skip
    for (model, tp, prompt, batch, generated), times in sorted(decode.items()):
        sm = step_model(model, tp)
        shapes = [BatchShape.decode(batch, c) for c in decode_contexts(prompt, generated)]
        parts = tuple((d, sm.stage_times(d)) for d in shapes)
        configs.append(
            Config("decode", model, tp, prompt, batch, generated, sm.model.layers, parts,
                   statistics.median(times), sm.hw, sm.model.vocab)
        )  # fmt: skip
    return configs


def fit_engine(configs: Sequence[Config], base: EngineSpec) -> EngineSpec:
    """Least squares on log(predicted / measured) over every configuration."""
    if not configs:
        raise CalibrationError("no iteration configurations to fit an engine profile on")
    measured = np.array([c.measured_s for c in configs])

    unit = np.array([u for *_, u in ENGINE_FIELDS])

    def build(x: Array) -> EngineSpec:
        return engine_with(base, {f[0]: float(v) for f, v in zip(ENGINE_FIELDS, x * unit, strict=True)})

    def residuals(x: Array) -> Array:
        engine = build(x)
        out: Array = np.log(np.array([predict_config(c, engine) for c in configs]) / measured)
        return out

    x0 = np.array([start for _, start, *_ in ENGINE_FIELDS]) / unit
    bounds = (
        np.array([lo for _, _, lo, _, _ in ENGINE_FIELDS]) / unit,
        np.array([hi for _, _, _, hi, _ in ENGINE_FIELDS]) / unit,
    )
    result = least_squares(residuals, x0, bounds=bounds, loss="soft_l1", f_scale=LOSS_SCALE, x_scale="jac")
    if not result.success:
        raise CalibrationError(f"engine fit did not converge: {result.message}")
    flat = unidentified([f[0] for f in ENGINE_FIELDS], result.jac, result.x, bounds)
    if flat:
        raise CalibrationError(f"the iteration table does not determine {', '.join(flat)}")
    return build(result.x)
