"""One calibration: read measured data, fit the device then the engine, build files and report.

Order matters and is fixed: (1) kernel-shape fields on operator timings, (2) collective fields on
allreduce/send-recv timings, (3) an engine profile on end-to-end iteration times *with the device
physics of (1)-(2) frozen*. Fitted values are rounded to 4 significant digits before anything is
reported, so the error tables describe exactly the files that are written.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmtwin.calibrate.bands import device_bands, iteration_bands
from llmtwin.calibrate.engine_fit import ENGINE_FIELDS, Config, build_configs, engine_with, fit_engine
from llmtwin.calibrate.fit import (
    ALLREDUCE_PARAMS,
    OP_PARAMS,
    P2P_PARAMS,
    fit_collectives,
    fit_ops,
    multi_node,
    scale_out_params,
)
from llmtwin.calibrate.measured import (
    CollectiveSample,
    IterationSample,
    expand_paths,
    read_collective_file,
    read_iteration_file,
    read_op_file,
)
from llmtwin.calibrate.opset import OpGroup, group_samples
from llmtwin.calibrate.toml_out import round_sig
from llmtwin.hardware.spec import HardwareSpec
from llmtwin.models.spec import ModelSpec
from llmtwin.physics.bands import BandTable
from llmtwin.physics.overhead import EngineSpec
from llmtwin.physics.precision import Precision
from llmtwin.physics.step import StepModel


@dataclass(frozen=True, slots=True)
class Inputs:
    """What to calibrate on."""

    hardware: HardwareSpec
    op_paths: Sequence[Path] = ()
    collective_paths: Sequence[Path] = ()
    iteration_path: Path | None = None
    iteration_hardware: str | None = None
    """Keep only iteration rows whose ``hardware`` column equals this (None: all rows)."""
    engine_name: str = "calibrated"
    max_tokens: int = 4096
    """Operator points with more tokens are reported (extrapolation) but not fitted."""
    max_batched_tokens: int | None = None
    """Prompt tokens the measured framework computed per forward pass at most; ``None``: the
    longest single prompt of the iteration table (it ran in one pass, and batches beyond it scale
    linearly, as passes do: docs/device-model.md, section 6)."""
    precision: Precision = field(default_factory=Precision)


@dataclass(frozen=True, slots=True)
class Result:
    """Fitted device (and engine), with the data they were fitted on."""

    hardware: HardwareSpec
    fitted: dict[str, float]
    """Efficiency fields the fit set, rounded as written."""
    groups: list[OpGroup]
    collectives: list[CollectiveSample]
    iterations: list[IterationSample]
    configs: list[Config]
    engine: EngineSpec | None


def calibrate(inputs: Inputs, model_lookup: Callable[[str], ModelSpec]) -> Result:
    """Run the three fits in order; ``model_lookup`` resolves the iteration table's model names."""
    prec = inputs.precision
    hw = inputs.hardware
    fitted_names: list[str] = []
    groups: list[OpGroup] = []
    if inputs.op_paths:
        samples = [s for p in expand_paths(inputs.op_paths, "*.mlp.csv") for s in read_op_file(p)]
        groups = group_samples(samples, prec)
        hw = fit_ops(hw, groups, prec, inputs.max_tokens)
        fitted_names += [p.name for p in OP_PARAMS]
    collectives: list[CollectiveSample] = []
    if inputs.collective_paths:
        paths = expand_paths(inputs.collective_paths, "*.csv")
        collectives = [s for p in paths for s in read_collective_file(p)]
        hw = fit_collectives(hw, collectives)
        kinds = {s.collective for s in collectives}
        fitted_names += [p.name for p in ALLREDUCE_PARAMS] if "all_reduce" in kinds else []
        fitted_names += [p.name for p in P2P_PARAMS] if "send_recv" in kinds else []
        fitted_names += [p.name for p in scale_out_params(multi_node(collectives))]
    fitted = {n: round_sig(getattr(hw.efficiency, n)) for n in fitted_names}
    hw = dataclasses.replace(hw, efficiency=hw.efficiency.replace_numbers(fitted))

    iterations: list[IterationSample] = []
    configs: list[Config] = []
    engine: EngineSpec | None = None
    if inputs.iteration_path is not None:
        iterations = read_iteration_file(inputs.iteration_path, inputs.iteration_hardware)
        cache: dict[tuple[str, int], StepModel] = {}

        def step_model(name: str, tp: int) -> StepModel:
            if (name, tp) not in cache:
                cache[(name, tp)] = StepModel(hw, model_lookup(name), tp, prec, check_fit=False)
            return cache[(name, tp)]

        cap = inputs.max_batched_tokens
        if cap is None:
            cap = (
                max(s.prompt for s in iterations if s.batch == 1)
                if any(s.batch == 1 for s in iterations)
                else 0
            )
        configs = build_configs(iterations, step_model, cap)
        base = EngineSpec(name=inputs.engine_name, host_speed=hw.host_cpu_speed, max_batched_tokens=cap)
        raw = fit_engine(configs, base)
        engine = engine_with(raw, {f[0]: round_sig(getattr(raw, f[0])) for f in ENGINE_FIELDS})
        engine = dataclasses.replace(
            engine, fitted_on=hw.name, bands=iteration_bands(configs, engine, iterations)
        )
    if groups or collectives:
        hw = dataclasses.replace(
            hw, bands=device_bands(hw, groups, prec, collectives), transfer_uncertainty=0.0
        )
    return Result(hw, fitted, groups, collectives, iterations, configs, engine)


CALIBRATED_PREFIX = "Calibrated with: "


def hardware_document(base: dict[str, Any], result: Result, command: str) -> dict[str, Any]:
    """The base hardware file's content with the fitted efficiency fields, their sources, and the
    reproducing command in ``notes`` (replacing the line of an earlier calibration)."""
    doc = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items() if k != "sources"}
    eff = dict(doc.get("efficiency", {}))
    sources = dict(base.get("sources", {}))
    for name, value in result.fitted.items():
        eff[name] = value
        sources[f"efficiency.{name}"] = (
            "[M] fitted by llmtwin calibrate (command in notes; docs/device-model.md)"
        )
    doc["efficiency"] = eff
    kept = [
        line
        for line in str(doc.get("notes", "")).splitlines()
        if line and not line.startswith(CALIBRATED_PREFIX)
    ]
    doc["notes"] = "\n".join([*kept, CALIBRATED_PREFIX + command])
    if result.hardware.bands:
        doc["bands"] = rounded_bands(result.hardware.bands)
    doc["sources"] = sources
    return doc


def engine_document(engine: EngineSpec, description: str, command: str) -> dict[str, Any]:
    """The content of an engine-overhead profile file."""
    return {
        "name": engine.name,
        "description": description,
        "iteration_overhead_us": round_sig(engine.iteration_overhead_s * 1e6),
        "per_kernel_launch_us": round_sig(engine.per_kernel_launch_s * 1e6),
        "per_sequence_overhead_us": round_sig(engine.per_sequence_overhead_s * 1e6),
        "prefill_overhead_us": round_sig(engine.prefill_overhead_s * 1e6),
        "per_layer_overhead_us": round_sig(engine.per_layer_overhead_s * 1e6),
        "per_sequence_vocab_ns": round_sig(engine.per_sequence_vocab_s * 1e9),
        "prefill_pair_bytes": round_sig(engine.prefill_pair_bytes),
        "host_speed": engine.host_speed,
        "max_batched_tokens": engine.max_batched_tokens,
        "fitted_on": engine.fitted_on,
        "source": f"fitted by `{command}` (see docs/device-model.md)",
        **({"bands": rounded_bands(engine.bands)} if engine.bands else {}),
    }


def rounded_bands(table: BandTable) -> dict[str, list[list[float]]]:
    """A band table for a file, multipliers rounded to 4 significant digits."""
    return {
        key: [[*row[:3], round_sig(row[3]), round_sig(row[4]), row[5]] for row in rows]
        for key, rows in table.to_document().items()
    }
