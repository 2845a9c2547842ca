"""Fit a device's kernel-shape parameters to measured operator and collective timings.

Only :class:`~llmtwin.hardware.spec.Efficiency` shape fields are fitted; the spec-sheet peaks and
the device measurements in the hardware file (``gemm_max``, ``hbm``, plateau allreduce bus
efficiency) stay as sourced, so the fitted shape transfers to devices that were never measured.
The objective is a robust (soft-L1) least squares on log(predicted / measured): every point counts
by its relative error, whatever its size, and a few outliers (warm-up spikes) cannot pull the fit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from llmtwin.calibrate.measured import CollectiveSample
from llmtwin.calibrate.opset import Array, OpGroup, predict
from llmtwin.errors import CalibrationError
from llmtwin.hardware.spec import Efficiency, HardwareSpec
from llmtwin.physics.collectives import Collective, p2p_time_array, ring_collective_time
from llmtwin.physics.precision import Precision


@dataclass(frozen=True, slots=True)
class Param:
    """One fitted field: its name, start value, bounds, and the scale the optimiser sees."""

    name: str
    start: float
    low: float
    high: float
    scale: float = 1.0
    """Seconds-valued fields are fitted in microseconds (scale 1e-6) to keep the problem
    well conditioned."""


OP_PARAMS: tuple[Param, ...] = (
    Param("gemm_realised", 0.85, 0.2, 1.2),
    Param("stream_realised", 0.95, 0.2, 1.2),
    Param("roofline_sharpness", 1.5, 1.0, 8.0),
    Param("gemm_overhead_s", 5.0, 0.0, 50.0, 1e-6),
    Param("kernel_overhead_s", 2.5, 0.0, 20.0, 1e-6),
    Param("norm_bw", 0.5, 0.02, 1.2),
    Param("activation_bw", 0.6, 0.02, 1.2),
    Param("rope_bw", 0.5, 0.02, 1.2),
    Param("add_bw", 0.9, 0.02, 1.2),
    Param("embedding_bw", 0.2, 0.02, 1.2),
    Param("row_parallel_rows_per_unit", 1.0, 0.01, 20.0),
)
"""Fields fitted on operator timings."""

ALLREDUCE_PARAMS: tuple[Param, ...] = (
    Param("allreduce_alpha_s", 30.0, 1.0, 500.0, 1e-6),
    Param("allreduce_realised", 0.7, 0.1, 1.5),
    Param("allreduce_sharpness", 1.0, 0.3, 4.0),
)
"""Fields fitted on intra-node allreduce timings."""

P2P_PARAMS: tuple[Param, ...] = (
    Param("p2p_alpha_s", 10.0, 0.0, 500.0, 1e-6),
    Param("p2p_efficiency", 0.8, 0.05, 1.2),
)
"""Fields fitted on intra-node send/recv timings."""

SCALE_OUT_PARAMS: tuple[Param, ...] = (
    Param("scale_out_efficiency", 0.5, 0.01, 1.5),
    Param("scale_out_alpha_s", 10.0, 0.0, 500.0, 1e-6),
    Param("scale_out_ring_efficiency", 0.8, 0.05, 1.5),
    Param("scale_out_rails", 4.0, 1.0, 64.0),
)
"""Fields fitted on the multi-node allreduce and send/recv timings together (the NIC's realised
bandwidth and latency are shared by both)."""

LOSS_SCALE = 0.1
"""Soft-L1 knee on log-time residuals: errors beyond ~10% count linearly, not quadratically."""


def with_efficiency(hw: HardwareSpec, **fields: float) -> HardwareSpec:
    """``hw`` with some efficiency fields replaced."""
    return dataclasses.replace(hw, efficiency=hw.efficiency.replace_numbers(fields))


BANDWIDTH_CLASS_FIELDS = frozenset(
    {"stream_realised", "norm_bw", "activation_bw", "rope_bw", "add_bw", "embedding_bw"}
)
"""Fractions of ``hbm`` x peak bandwidth. The roofline caps ``hbm * fraction`` at 1 (no kernel
streams faster than peak HBM), so any value above ``1 / hbm`` predicts the same times: the fit's
upper bound is that cap, never beyond it (see :func:`bounded`)."""

FLAT_TOLERANCE = 1e-9
"""A fitted parameter whose Jacobian column is this small relative to the largest one does not
change any prediction: it is reported as unidentified rather than written (see :func:`_solve`)."""


def bounded(params: Sequence[Param], hw: HardwareSpec) -> list[Param]:
    """``params`` with every bandwidth-class upper bound cut to ``1 / hbm`` of ``hw``.

    Above that cap a class fraction has no effect on any prediction, so the least-squares problem
    is flat in that direction and the optimiser would stop wherever rounding on the machine at
    hand leaves it (on one machine ``add_bw`` ended at 1.187, on another at 1.177, with identical
    predictions). With the bound at the cap the answer is the cap itself, on every machine.
    """
    cap = 1.0 / hw.efficiency.hbm
    return [
        dataclasses.replace(p, high=min(p.high, cap), start=min(p.start, cap))
        if p.name in BANDWIDTH_CLASS_FIELDS
        else p
        for p in params
    ]


def _solve(
    hw: HardwareSpec, params: Sequence[Param], residuals: Callable[[HardwareSpec], Array]
) -> HardwareSpec:
    """Least squares over ``params``, starting from fixed values (reproducible).

    Raises :class:`CalibrationError` when a parameter does not influence the residuals at the
    solution: its value would be an accident of the optimiser's path (and of the machine's
    floating-point rounding), not a property of the data.
    """
    params = bounded(params, hw)

    def build(x: Array) -> HardwareSpec:
        return with_efficiency(hw, **{p.name: float(v) * p.scale for p, v in zip(params, x, strict=True)})

    x0 = np.array([p.start for p in params])
    bounds = (np.array([p.low for p in params]), np.array([p.high for p in params]))
    result = least_squares(
        lambda x: residuals(build(x)), x0, bounds=bounds, loss="soft_l1", f_scale=LOSS_SCALE, x_scale="jac"
    )
    if not result.success:
        raise CalibrationError(f"fit did not converge: {result.message}")
    flat = unidentified([p.name for p in params], result.jac, result.x, bounds)
    if flat:
        raise CalibrationError(f"the data do not determine {', '.join(flat)} (no prediction depends on it)")
    return build(result.x)


def unidentified(names: Sequence[str], jac: Array, x: Array, bounds: tuple[Array, Array]) -> list[str]:
    """Names of free parameters (not held at a bound) on which no residual depends."""
    norms = np.linalg.norm(jac, axis=0) * np.maximum(np.abs(x), 1e-12)
    top = float(norms.max()) if norms.size else 0.0
    at_bound = np.isclose(x, bounds[0], rtol=1e-6, atol=1e-12) | np.isclose(
        x, bounds[1], rtol=1e-6, atol=1e-12
    )
    return [
        name for name, n, b in zip(names, norms, at_bound, strict=True) if not b and n <= FLAT_TOLERANCE * top
    ]


def fit_ops(hw: HardwareSpec, groups: Sequence[OpGroup], prec: Precision, max_tokens: int) -> HardwareSpec:
    """Fit :data:`OP_PARAMS` on the points with at most ``max_tokens`` tokens."""
    used = [(g, g.tokens <= max_tokens) for g in groups]
    if not any(mask.any() for _, mask in used):
        raise CalibrationError(f"no operator samples with at most {max_tokens} tokens")
    present: set[str] = {g.memory_class for g in groups if g.kind != "gemm"}
    present |= {"gemm"} if any(g.kind == "gemm" for g in groups) else set()
    present |= {"memory"} if any(g.kind != "gemm" for g in groups) else set()
    present |= {"row_parallel"} if any(g.row_parallel for g in groups) else set()
    params = [p for p in OP_PARAMS if _relevant(p.name, present)]

    def residuals(h: HardwareSpec) -> Array:
        return np.concatenate([np.log(predict(h, g, prec)[m] / g.measured_s[m]) for g, m in used])

    return _solve(hw, params, residuals)


_NEEDS: dict[str, str] = {
    "norm_bw": "norm", "activation_bw": "activation", "rope_bw": "rope", "add_bw": "add",
    "embedding_bw": "embedding", "gemm_realised": "gemm", "stream_realised": "gemm",
    "roofline_sharpness": "gemm", "gemm_overhead_s": "gemm", "kernel_overhead_s": "memory",
    "row_parallel_rows_per_unit": "row_parallel",
}  # fmt: skip
"""What must have been measured for a field to be fitted (else it keeps its value): an op of its
memory class, a GEMM, any memory-bound kernel, or a row-per-block kernel."""


def _relevant(name: str, present: set[str]) -> bool:
    return name not in _NEEDS or _NEEDS[name] in present


def collective_prediction(hw: HardwareSpec, samples: Sequence[CollectiveSample]) -> Array:
    """Predicted seconds for each sample (allreduce/allgather by ring, send_recv point to point)."""
    out = np.empty(len(samples))
    by_kind: dict[tuple[str, int, int], list[int]] = {}
    for i, s in enumerate(samples):
        by_kind.setdefault((s.collective, s.world, s.devices_per_node), []).append(i)
    for (name, world, per_node), idx in by_kind.items():
        sizes = np.array([float(samples[i].size_bytes) for i in idx])
        intra = world <= per_node
        if name == "send_recv":
            out[idx] = p2p_time_array(hw, sizes, same_node=intra)
        else:
            op: Collective = "all_gather" if name == "all_gather" else "all_reduce"
            node_hw = hw if intra else spread_over_nodes(hw, per_node)
            out[idx] = ring_collective_time(node_hw, op, world, sizes)
    return out


def spread_over_nodes(hw: HardwareSpec, per_node: int) -> HardwareSpec:
    """``hw`` as seen by a group with ``per_node`` of its devices in each node: the node size is
    the group's share, so a larger group runs over the scale-out link (the convention of
    :mod:`llmtwin.physics.collectives` and ``llmtwin collective --devices-per-node``)."""
    link = dataclasses.replace(hw.link, devices_per_node=min(hw.link.devices_per_node, per_node))
    return dataclasses.replace(hw, link=link)


def fit_collectives(hw: HardwareSpec, samples: Sequence[CollectiveSample]) -> HardwareSpec:
    """Fit allreduce and send/recv fields on the intra-node samples (the scale-up fabric), then the
    scale-out fields on the multi-node samples with the scale-up ones frozen."""
    steps: list[tuple[list[CollectiveSample], Sequence[Param]]] = [
        ([s for s in samples if s.collective == kind and s.intra_node and s.world > 1], params)
        for kind, params in (("all_reduce", ALLREDUCE_PARAMS), ("send_recv", P2P_PARAMS))
    ]
    across = multi_node(samples)
    steps.append((across, scale_out_params(across)))
    for chosen, params in steps:
        if not chosen:
            continue
        measured = np.array([s.time_s for s in chosen])

        def residuals(h: HardwareSpec, chosen: list[CollectiveSample] = chosen, m: Array = measured) -> Array:
            return np.log(collective_prediction(h, chosen) / m)

        hw = _solve(hw, params, residuals)
    return hw


def multi_node(samples: Sequence[CollectiveSample]) -> list[CollectiveSample]:
    """The allreduce and send/recv samples whose group spans nodes."""
    return [s for s in samples if not s.intra_node and s.collective in ("all_reduce", "send_recv")]


def scale_out_params(across: Sequence[CollectiveSample]) -> list[Param]:
    """The scale-out fields multi-node samples determine: the ring fields need an allreduce, the
    number of rails needs groups with different numbers of devices per node."""
    rings = [s for s in across if s.collective == "all_reduce"]
    wanted = {"scale_out_efficiency", "scale_out_alpha_s"} if across else set()
    wanted |= {"scale_out_ring_efficiency"} if rings else set()
    wanted |= {"scale_out_rails"} if len({s.devices_per_node for s in rings}) > 1 else set()
    return [p for p in SCALE_OUT_PARAMS if p.name in wanted]


def fitted_fields(params: Sequence[Param], eff: Efficiency) -> dict[str, float]:
    """The values of ``params`` in ``eff``."""
    return {p.name: getattr(eff, p.name) for p in params}
