"""Fit-error tables: median absolute relative error of predicted against measured times.

Errors are |predicted / measured - 1| per measured point; a table row reports their median
(``MAE`` in the docs: median absolute error, in percent) and 90th percentile over a subset.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from llmtwin.calibrate.engine_fit import Config, predict_config
from llmtwin.calibrate.fit import collective_prediction
from llmtwin.calibrate.measured import CollectiveSample, IterationSample
from llmtwin.calibrate.opset import Array, OpGroup, predict
from llmtwin.hardware.spec import HardwareSpec
from llmtwin.physics.bands import DECODE_RANGES, PREFILL_RANGES, TOKEN_RANGES, UNBOUNDED
from llmtwin.physics.overhead import EngineSpec
from llmtwin.physics.precision import Precision

TP_DEGREES = (1, 2, 4, 8)


@dataclass(frozen=True, slots=True)
class ErrorRow:
    """Error statistics of one subset of measured points."""

    label: tuple[str, ...]
    count: int
    median_pct: float
    p90_pct: float


def _row(label: tuple[str, ...], errors: Array) -> ErrorRow:
    if errors.size == 0:
        return ErrorRow(label, 0, float("nan"), float("nan"))
    return ErrorRow(
        label, int(errors.size), float(np.median(errors) * 100), float(np.percentile(errors, 90) * 100)
    )


def _relative_errors(
    hw: HardwareSpec, g: OpGroup, prec: Precision, low: int, high: int
) -> tuple[Array, npt.NDArray[np.bool_]]:
    """|predicted / measured - 1| for every sample of one op, and the mask of tokens in [low, high]."""
    err = np.abs(predict(hw, g, prec) / g.measured_s - 1.0)
    return err, (g.tokens >= low) & (g.tokens <= high)


def op_errors(
    hw: HardwareSpec, groups: Sequence[OpGroup], prec: Precision, low: int, high: int
) -> list[ErrorRow]:
    """One row per op: all TP degrees, then one per TP, over tokens in [low, high]."""
    rows: list[ErrorRow] = []
    for g in groups:
        err, window = _relative_errors(hw, g, prec, low, high)
        rows.append(_row((g.op, "all"), err[window]))
        rows.extend(_row((g.op, str(tp)), err[window & (g.tp == tp)]) for tp in TP_DEGREES)
    return rows


def op_errors_by_model(
    hw: HardwareSpec, groups: Sequence[OpGroup], prec: Precision, low: int, high: int
) -> list[ErrorRow]:
    """One row per (op, model) over tokens in [low, high]."""
    rows: list[ErrorRow] = []
    for g in groups:
        err, window = _relative_errors(hw, g, prec, low, high)
        rows.extend(_row((g.op, str(m)), err[window & (g.model == m)]) for m in sorted(set(g.model)))
    return rows


def collective_errors(hw: HardwareSpec, samples: Sequence[CollectiveSample]) -> list[ErrorRow]:
    """One row per (collective, world, devices per node)."""
    predicted = collective_prediction(hw, samples)
    measured = np.array([s.time_s for s in samples])
    err = np.abs(predicted / measured - 1.0)
    keys = sorted({(s.collective, s.world, s.devices_per_node) for s in samples})
    rows = []
    for name, world, per_node in keys:
        mask = np.array(
            [(s.collective, s.world, s.devices_per_node) == (name, world, per_node) for s in samples]
        )
        scope = "intra-node" if world <= per_node else f"{world // per_node} nodes"
        rows.append(_row((name, str(world), scope), err[mask]))
    return rows


def iteration_errors(
    configs: Sequence[Config], engine: EngineSpec, samples: Sequence[IterationSample]
) -> list[ErrorRow]:
    """Per measured *row* (as the acceptance counts them): one row per (phase, model, TP), then
    one per phase over everything."""
    by_key = {(c.phase, c.model, c.tp, c.prompt, c.batch, c.generated): c for c in configs}
    cells: dict[tuple[str, str, str], list[float]] = {}
    for s in samples:
        for phase, measured, generated in (("prefill", s.prefill_s, 0), ("decode", s.decode_s, s.generated)):
            cfg = by_key[(phase, s.model, s.tp, s.prompt, s.batch, generated)]
            e = abs(predict_config(cfg, engine) / measured - 1.0)
            cells.setdefault((phase, s.model, str(s.tp)), []).append(e)
            cells.setdefault((phase, "all", "all"), []).append(e)
    return [
        _row(k, np.array(v))
        for k, v in sorted(cells.items(), key=lambda kv: (kv[0][0], kv[0][1] == "all", kv[0]))
    ]


def region_label(lo: int, hi: int) -> str:
    return f"> {lo - 1}" if hi >= UNBOUNDED else f"{lo}-{hi}"


def op_errors_by_region(hw: HardwareSpec, groups: Sequence[OpGroup], prec: Precision) -> list[ErrorRow]:
    """One row per (op class, token range, TP), TP ``all`` pooled: the regions of the bands."""
    by_class: dict[str, list[tuple[Array, Array, Array]]] = {}
    for g in groups:
        key: str = "gemm" if g.kind == "gemm" else g.memory_class
        err = np.abs(predict(hw, g, prec) / g.measured_s - 1.0)
        by_class.setdefault(key, []).append((err, g.tokens, g.tp))
    rows: list[ErrorRow] = []
    for key, parts in by_class.items():
        err, tokens, tp = (np.concatenate([p[i] for p in parts]) for i in range(3))
        for lo, hi in TOKEN_RANGES:
            window = (tokens >= lo) & (tokens <= hi)
            label = region_label(lo, hi)
            rows.append(_row((key, label, "all"), err[window]))
            rows.extend(_row((key, label, str(t)), err[window & (tp == t)]) for t in TP_DEGREES)
    return rows


def iteration_errors_by_region(
    configs: Sequence[Config], engine: EngineSpec, samples: Sequence[IterationSample]
) -> list[ErrorRow]:
    """Per measured row, by (phase, size range, TP): prompt tokens of the iteration for prefill,
    sequences for decode."""
    by_key = {
        (c.phase, c.model, c.tp, c.prompt, c.batch, c.generated): predict_config(c, engine) for c in configs
    }
    cells: dict[tuple[str, str, str], list[float]] = {}
    for s in samples:
        item: tuple[str, float, int, int, tuple[tuple[int, int], ...]]
        for item in (
            ("prefill", s.prefill_s, 0, s.batch * s.prompt, PREFILL_RANGES),
            ("decode", s.decode_s, s.generated, s.batch, DECODE_RANGES),
        ):
            phase, measured, generated, size, ranges = item
            e = abs(by_key[(phase, s.model, s.tp, s.prompt, s.batch, generated)] / measured - 1.0)
            lo, hi = next(r for r in ranges if r[0] <= size <= r[1])
            for tp in (str(s.tp), "all"):
                cells.setdefault((phase, region_label(lo, hi), tp), []).append(e)
    order = {
        region_label(lo, hi): i
        for ranges in (PREFILL_RANGES, DECODE_RANGES)
        for i, (lo, hi) in enumerate(ranges)
    }
    keys = sorted(cells, key=lambda k: (k[0] != "prefill", order[k[1]], k[2]))
    return [_row(k, np.array(cells[k])) for k in keys]


def config_errors(configs: Sequence[Config], engine: EngineSpec) -> list[tuple[Config, float, float]]:
    """(configuration, predicted seconds, signed relative error) for every unique configuration."""
    out = []
    for c in configs:
        p = predict_config(c, engine)
        out.append((c, p, p / c.measured_s - 1.0))
    return out


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines.extend("| " + " | ".join(r) + " |" for r in rows)
    return "\n".join(lines)


def pct(value: float) -> str:
    return "-" if np.isnan(value) else f"{value:.1f}"
