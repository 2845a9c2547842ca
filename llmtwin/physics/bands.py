"""Uncertainty bands of the model's predictions, from its calibration residuals.

A band is a pair of multipliers ``(low, high)`` of a predicted time: over the calibration points
of one *region*, 80% of the measured / predicted ratios lie between them (their 10th and 90th
percentiles, :data:`BAND_QUANTILES`). A prediction ``t`` is then quoted as ``[low * t, high * t]``.

Regions are cells of a :class:`BandTable`, keyed by a class name and a TP degree (0: all TP
degrees pooled) over a size range:

* device physics (a hardware file's ``[bands]``, written by ``llmtwin calibrate``): op classes
  ``gemm``, ``norm``, ``activation``, ``rope``, ``add``, ``embedding`` over GEMM rows
  (:data:`TOKEN_RANGES`) and ``all_reduce`` over message bytes (:data:`BYTE_RANGES`);
* an engine profile (its ``[bands]``): whole iterations, ``prefill`` over the prompt tokens of
  the iteration (:data:`PREFILL_RANGES`) and ``decode`` over the sequences (:data:`DECODE_RANGES`).

Attention has no measured timings: its band is the stated uncertainty of its assumptions
(:data:`ATTENTION_BAND`). A device without its own calibration uses the reference device's
bands widened by its ``transfer_uncertainty`` (:meth:`Band.widen`): the error the shape
parameters carry to hardware they were not fitted on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from llmtwin.errors import CatalogFileError

BandEdge = Literal["low", "high"]

BAND_QUANTILES = (0.10, 0.90)
"""Quantiles of measured / predicted that bound a band (an 80% interval)."""

MIN_POINTS = 5
"""A cell with fewer calibration points is not written; lookups fall back to a pooled cell."""

UNBOUNDED = 10**12
"""Upper end of the last size range of each kind (no measured size comes near it)."""
TOKEN_RANGES: tuple[tuple[int, int], ...] = ((1, 64), (65, 512), (513, 4096), (4097, UNBOUNDED))
"""GEMM rows of an op (memory- to compute-bound, and beyond the fitted 4096)."""
BYTE_RANGES: tuple[tuple[int, int], ...] = (
    (1, 1 << 20),
    ((1 << 20) + 1, 16 << 20),
    ((16 << 20) + 1, UNBOUNDED),
)
"""Collective payload per rank: latency-bound, protocol hand-over, bandwidth-bound."""
PREFILL_RANGES: tuple[tuple[int, int], ...] = ((1, 512), (513, 2048), (2049, 8192), (8193, UNBOUNDED))
"""Prompt tokens of one iteration."""
DECODE_RANGES: tuple[tuple[int, int], ...] = ((1, 4), (5, 16), (17, 64), (65, UNBOUNDED))
"""Decoding sequences of one iteration."""

ATTENTION_BAND_LOW = 0.75
ATTENTION_BAND_HIGH = 1.35
"""[E] Attention kernels are not in the measured data. FlashAttention-2 reaches 50-73% of A100
peak in its paper's forward benchmarks, against the 55% assumed (x 0.75 to x 1.1 of the time at
long sequences, wider at short ones where the ramp and occupancy are assumed); paged decode costs
20-26% more than a contiguous kernel (vLLM paper), which the gather bandwidth carries."""


@dataclass(frozen=True, slots=True)
class Band:
    """Multipliers of a predicted time: the measured time lies within ``[low, high]`` x predicted
    for 80% of the calibration points of the region."""

    low: float = 1.0
    high: float = 1.0

    def widen(self, uncertainty: float) -> Band:
        """This band carried to another device with a further relative ``uncertainty`` on both
        sides. It then always holds the prediction itself: a bias measured on the reference device
        (a band wholly above or below 1) need not carry over."""
        if uncertainty <= 0.0:
            return self
        f = 1.0 + uncertainty
        return Band(min(self.low, 1.0) / f, max(self.high, 1.0) * f)

    def edge(self, which: BandEdge) -> float:
        return self.low if which == "low" else self.high


ATTENTION_BAND = Band(ATTENTION_BAND_LOW, ATTENTION_BAND_HIGH)


@dataclass(frozen=True, slots=True)
class BandCell:
    """One region: a TP degree (0: pooled over TP) and a closed size range."""

    tp: int
    lo: int
    hi: int
    band: Band
    points: int

    def holds(self, size: int) -> bool:
        return self.lo <= size <= self.hi


@dataclass(frozen=True, slots=True)
class BandTable:
    """Band cells by class name (op class or iteration phase)."""

    cells: Mapping[str, tuple[BandCell, ...]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return any(self.cells.values())

    def lookup(self, key: str, tp: int, size: int) -> Band | None:
        """The band of the most specific cell: this TP and size range, else all TP degrees at this
        size range, else the nearest size range (this TP first on ties); ``None`` when the class
        has no cell."""
        cells = [c for c in self.cells.get(key, ()) if c.tp in (tp, 0)]
        for want_tp in (tp, 0):
            hit = [c for c in cells if c.tp == want_tp and c.holds(size)]
            if hit:
                return hit[0].band
        if not cells:
            return None
        nearest = min(cells, key=lambda c: (min(abs(size - c.lo), abs(size - c.hi)), c.tp != tp))
        return nearest.band

    def to_document(self) -> dict[str, list[list[float]]]:
        """``{class: [[tp, lo, hi, low, high, points], ...]}`` for a TOML file."""
        return {
            key: [[c.tp, c.lo, c.hi, c.band.low, c.band.high, c.points] for c in cells]
            for key, cells in self.cells.items()
        }


def read_band_table(path: Path, table: Mapping[str, Any], where: str = "bands") -> BandTable:
    """Parse a ``[bands]`` table (the inverse of :meth:`BandTable.to_document`); any malformed
    row is a one-line :class:`CatalogFileError`."""
    cells: dict[str, tuple[BandCell, ...]] = {}
    for key, rows in table.items():
        here = f"{path}: field '{where}.{key}'"
        if not isinstance(rows, list):
            raise CatalogFileError(f"{here} must be an array of [tp, lo, hi, low, high, points] rows")
        cells[str(key)] = tuple(_cell(here, row) for row in rows)
    return BandTable(cells)


def _cell(here: str, row: Any) -> BandCell:
    numbers = isinstance(row, list) and len(row) == 6
    numbers = numbers and all(isinstance(v, int | float) and not isinstance(v, bool) for v in row)
    if not numbers or not (row[0] >= 0 and 1 <= row[1] <= row[2] and 0 < row[3] <= row[4] and row[5] > 0):
        raise CatalogFileError(f"{here}: row {row!r} is not [tp >= 0, lo <= hi, 0 < low <= high, points > 0]")
    return BandCell(int(row[0]), int(row[1]), int(row[2]), Band(float(row[3]), float(row[4])), int(row[5]))
