"""How much the L2 sweep's answers move over the plausible range of its uncalibrated inputs.

Two inputs of a PRESERVE result are not calibrated on any device we model it for (the 910B2):

* ``allreduce_alpha_us``: the small-message allreduce latency on top of the ring's hops
  (``Efficiency.allreduce_alpha_s``). A decode allreduce is latency-bound, so this is how long
  each prefetch window lasts.
* ``l2_hbm_ratio``: the achieved L2 read bandwidth over the achieved HBM streaming bandwidth
  (``l2_tb_s x l2`` over ``hbm_tb_s x hbm x stream_realised``). A prefetched byte still costs
  ``1 / BW_l2`` when read, so this decides what a window saves.

:func:`sensitivity` runs :func:`~llmtwin.preserve.sweep.sweep_l2` on every combination of the
values given and reports each answer (the with-prefetch optimum, the perf/cost gain, the
speedup there) and its range over the grid: the band docs/preserve.md quotes.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from statistics import geometric_mean

from llmtwin.errors import ConfigurationError
from llmtwin.hardware.spec import HardwareSpec
from llmtwin.physics.roofline import class_bandwidth_fraction
from llmtwin.physics.step import StepModel
from llmtwin.preserve.sweep import SweepResult


def with_alpha_us(hw: HardwareSpec, value: float) -> HardwareSpec:
    return dataclasses.replace(
        hw, efficiency=hw.efficiency.replace_numbers({"allreduce_alpha_s": value * 1e-6})
    )


def with_l2_hbm_ratio(hw: HardwareSpec, value: float) -> HardwareSpec:
    """``hw`` with the L2 bandwidth that gives an achieved L2:HBM read ratio of ``value``."""
    hbm_rate = hw.hbm_bandwidth * class_bandwidth_fraction(hw.efficiency, "stream")
    return dataclasses.replace(hw, l2_bandwidth=value * hbm_rate / hw.efficiency.l2)


def l2_hbm_ratio(hw: HardwareSpec) -> float:
    """Achieved L2 read bandwidth over achieved HBM streaming bandwidth."""
    return (
        hw.l2_bandwidth
        * hw.efficiency.l2
        / (hw.hbm_bandwidth * class_bandwidth_fraction(hw.efficiency, "stream"))
    )


INPUTS: dict[str, Callable[[HardwareSpec, float], HardwareSpec]] = {
    "allreduce_alpha_us": with_alpha_us,
    "l2_hbm_ratio": with_l2_hbm_ratio,
}
"""The inputs :func:`sensitivity` can vary, and how each sets a hardware figure."""


@dataclass(frozen=True, slots=True)
class SensitivityPoint:
    """The sweep's answers at one combination of input values."""

    inputs: dict[str, float]
    with_prefetch_mb: float
    perf_per_cost_gain: float
    speedup_at_optimum: float
    """Geometric mean over the mix of the PRESERVE speedup at the with-prefetch optimum."""
    max_speedup: float
    """Largest PRESERVE speedup of any workload at any L2 size."""


def point_of(inputs: Mapping[str, float], result: SweepResult) -> SensitivityPoint:
    o = result.optimum
    return SensitivityPoint(
        dict(inputs),
        o.with_prefetch_mb,
        o.perf_per_cost_gain,
        geometric_mean(result.speedups[o.with_prefetch_mb]),
        max(max(s) for s in result.speedups.values()),
    )


def sensitivity(
    step_model: StepModel, grid: Mapping[str, Sequence[float]], sweep: Callable[[StepModel], SweepResult]
) -> list[SensitivityPoint]:
    """``sweep`` on the step model of every combination of ``grid``'s input values."""
    unknown = set(grid) - set(INPUTS)
    if unknown:
        raise ConfigurationError(f"--vary takes {', '.join(INPUTS)}; unknown: {', '.join(sorted(unknown))}")
    names = list(grid)
    out: list[SensitivityPoint] = []
    for values in itertools.product(*(grid[n] for n in names)):
        hw = step_model.hw
        for name, value in zip(names, values, strict=True):
            hw = INPUTS[name](hw, value)
        sm = StepModel(hw, step_model.model, step_model.tp, step_model.prec, step_model.engine)
        out.append(point_of(dict(zip(names, values, strict=True)), sweep(sm)))
    return out


def band_of(points: Sequence[SensitivityPoint]) -> dict[str, tuple[float, float]]:
    """The range of each answer over the grid."""
    fields = ("with_prefetch_mb", "perf_per_cost_gain", "speedup_at_optimum", "max_speedup")
    return {f: (min(getattr(p, f) for p in points), max(getattr(p, f) for p in points)) for f in fields}
