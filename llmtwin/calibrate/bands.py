"""Uncertainty bands from a calibration's residuals (see :mod:`llmtwin.physics.bands`).

Every measured point's ratio measured / predicted (with the written, rounded fit) falls in one
region; a region's band is the 10th and 90th percentile of its ratios. Device regions (op class
x TP x GEMM rows, allreduce x world x bytes) go into the hardware file, iteration regions (phase
x TP x prompt tokens or sequences) into the engine file.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from llmtwin.calibrate.engine_fit import Config, predict_config
from llmtwin.calibrate.fit import collective_prediction
from llmtwin.calibrate.measured import CollectiveSample, IterationSample
from llmtwin.calibrate.opset import OpGroup, predict
from llmtwin.hardware.spec import HardwareSpec
from llmtwin.physics.bands import (
    BAND_QUANTILES,
    BYTE_RANGES,
    DECODE_RANGES,
    MIN_POINTS,
    PREFILL_RANGES,
    TOKEN_RANGES,
    Band,
    BandCell,
    BandTable,
)
from llmtwin.physics.overhead import EngineSpec
from llmtwin.physics.precision import Precision

OUTLIER_RATIO = 3.0
"""A point measured more than 3x off its prediction either way is a failed measurement (e.g. the
Llama-2-70B TP2 64 x 512 prefill row at a seventeenth of its neighbours' per-token cost), not an
error of the model: it is kept out of the bands (and counted in the calibration report)."""


def region_cells(
    residuals: Iterable[tuple[int, int, float]], ranges: Sequence[tuple[int, int]]
) -> tuple[BandCell, ...]:
    """Cells from ``(tp, size, measured / predicted)`` triples: one per (TP, range) and one per
    range over all TP degrees (tp 0), each with at least :data:`MIN_POINTS` points."""
    points = [
        (int(t), int(s), float(r)) for t, s, r in residuals if 1.0 / OUTLIER_RATIO <= r <= OUTLIER_RATIO
    ]
    out: list[BandCell] = []
    for tp in [*sorted({p[0] for p in points}), 0]:
        for lo, hi in ranges:
            ratios = np.array([r for t, s, r in points if (tp == 0 or t == tp) and lo <= s <= hi])
            if ratios.size < MIN_POINTS:
                continue
            low, high = (float(np.exp(np.quantile(np.log(ratios), q))) for q in BAND_QUANTILES)
            out.append(BandCell(tp, lo, hi, Band(low, high), int(ratios.size)))
    return tuple(out)


def device_bands(
    hw: HardwareSpec, groups: Sequence[OpGroup], prec: Precision, collectives: Sequence[CollectiveSample]
) -> BandTable:
    """Op-class bands over GEMM rows and allreduce bands over message bytes (intra-node groups)."""
    by_class: dict[str, list[tuple[int, int, float]]] = {}
    for g in groups:
        key = "gemm" if g.kind == "gemm" else g.memory_class
        ratio = g.measured_s / predict(hw, g, prec)
        by_class.setdefault(key, []).extend(zip(g.tp.astype(int), g.tokens.astype(int), ratio, strict=True))
    cells = {k: region_cells(v, TOKEN_RANGES) for k, v in by_class.items()}
    rings = [s for s in collectives if s.collective == "all_reduce" and s.intra_node and s.world > 1]
    if rings:
        ratio = np.array([s.time_s for s in rings]) / collective_prediction(hw, rings)
        cells["all_reduce"] = region_cells(
            ((s.world, s.size_bytes, r) for s, r in zip(rings, ratio, strict=True)), BYTE_RANGES
        )
    return BandTable({k: v for k, v in cells.items() if v})


def iteration_bands(
    configs: Sequence[Config], engine: EngineSpec, samples: Sequence[IterationSample]
) -> BandTable:
    """Whole-iteration bands: prefill over the prompt tokens of the iteration, decode over the
    batch, from every measured row (as the acceptance counts them)."""
    by_key = {
        (c.phase, c.model, c.tp, c.prompt, c.batch, c.generated): predict_config(c, engine) for c in configs
    }
    prefill: list[tuple[int, int, float]] = []
    decode: list[tuple[int, int, float]] = []
    for s in samples:
        p = by_key[("prefill", s.model, s.tp, s.prompt, s.batch, 0)]
        d = by_key[("decode", s.model, s.tp, s.prompt, s.batch, s.generated)]
        prefill.append((s.tp, s.batch * s.prompt, s.prefill_s / p))
        decode.append((s.tp, s.batch, s.decode_s / d))
    return BandTable(
        {"prefill": region_cells(prefill, PREFILL_RANGES), "decode": region_cells(decode, DECODE_RANGES)}
    )
