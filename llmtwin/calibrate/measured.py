"""Readers for measured timings: Vidur profiling CSVs and end-to-end iteration tables.

* Operator file (Vidur ``*.mlp.csv``): one row per (num_tokens, num_tensor_parallel_workers) with
  the model's dimensions (n_head, n_kv_head, n_embd, n_expanded_embd, vocab_size, use_gated_mlp)
  and ``time_stats.<op>.median`` in milliseconds per op, per layer, per device.
* Collective file (Vidur ``*.all_reduce.csv`` / ``*.send_recv.csv``): ``size`` (bytes),
  ``num_workers``, ``devices_per_node`` and ``time_stats.<collective>.median`` in milliseconds.
* Iteration file (splitwise-sim ``perf_model.csv``): model, prompt_size, batch_size, token_size,
  prompt_time and token_time (ms), tensor_parallel.

Duplicate rows for one configuration are merged by their median. Every problem with a file
becomes a one-line :class:`~llmtwin.errors.CalibrationError`.
"""

from __future__ import annotations

import csv
import re
import statistics
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from llmtwin.errors import CalibrationError
from llmtwin.physics.graph import VIDUR_OPS


@dataclass(frozen=True, slots=True)
class ModelDims:
    """The dimensions a Vidur operator file records for its model."""

    name: str
    heads: int
    kv_heads: int
    hidden: int
    intermediate: int
    vocab: int
    gated_mlp: bool


@dataclass(frozen=True, slots=True)
class OpSample:
    """Median time of one op at one (tokens, TP) point."""

    dims: ModelDims
    op: str
    tokens: int
    tp: int
    time_s: float


@dataclass(frozen=True, slots=True)
class CollectiveSample:
    """Median time of one collective of ``size_bytes`` per rank over ``world`` devices."""

    collective: str
    size_bytes: int
    world: int
    devices_per_node: int
    time_s: float

    @property
    def intra_node(self) -> bool:
        return self.world <= self.devices_per_node


@dataclass(frozen=True, slots=True)
class IterationSample:
    """One measured request: prefill of ``batch`` prompts, then ``generated`` decode iterations."""

    model: str
    tp: int
    prompt: int
    batch: int
    generated: int
    prefill_s: float
    decode_s: float
    """Mean decode iteration time over the ``generated`` tokens."""


def _rows(path: Path) -> Iterator[dict[str, str]]:
    try:
        with path.open(newline="") as fh:
            yield from csv.DictReader(fh)
    except OSError as exc:
        raise CalibrationError(f"{path}: cannot read: {exc.strerror}") from None


def _number(path: Path, row: dict[str, str], key: str) -> float:
    value = row.get(key)
    if value is None:
        raise CalibrationError(f"{path}: column {key!r} is missing")
    try:
        return float(value)
    except ValueError:
        raise CalibrationError(f"{path}: column {key!r} holds {value!r}, not a number") from None


def expand_paths(paths: Iterable[Path], pattern: str) -> list[Path]:
    """Files named directly plus files matching ``pattern`` inside named directories."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(p.glob(pattern)))
        elif p.is_file():
            out.append(p)
        else:
            raise CalibrationError(f"{p}: no such file or directory")
    if not out:
        raise CalibrationError(f"no {pattern} files in {', '.join(str(p) for p in paths)}")
    return out


def model_name_of(path: Path) -> str:
    """``Llama-2-7b-hf.mlp.csv`` -> ``Llama-2-7b-hf``."""
    return path.name.split(".")[0]


def read_op_file(path: Path) -> list[OpSample]:
    """All (op, tokens, TP) medians of one Vidur operator file."""
    groups: dict[tuple[int, int], list[dict[str, str]]] = defaultdict(list)
    dims: ModelDims | None = None
    for row in _rows(path):
        tokens = int(_number(path, row, "num_tokens"))
        tp = int(_number(path, row, "num_tensor_parallel_workers"))
        groups[(tokens, tp)].append(row)
        if dims is None:
            dims = ModelDims(
                name=model_name_of(path),
                heads=int(_number(path, row, "n_head")),
                kv_heads=int(_number(path, row, "n_kv_head")),
                hidden=int(_number(path, row, "n_embd")),
                intermediate=int(_number(path, row, "n_expanded_embd")),
                vocab=int(_number(path, row, "vocab_size")),
                gated_mlp=row.get("use_gated_mlp", "True").strip().lower() in ("true", "1"),
            )
    if dims is None:
        raise CalibrationError(f"{path}: no data rows")
    samples: list[OpSample] = []
    for (tokens, tp), rows in sorted(groups.items()):
        for op in VIDUR_OPS:
            key = f"time_stats.{op}.median"
            values = [_number(path, r, key) for r in rows if r.get(key, "").strip()]
            if values:
                samples.append(OpSample(dims, op, tokens, tp, statistics.median(values) * 1e-3))
    if not samples:
        raise CalibrationError(f"{path}: no time_stats.<op>.median columns for {', '.join(VIDUR_OPS)}")
    return samples


def read_collective_file(path: Path) -> list[CollectiveSample]:
    """All (size, world, devices per node) medians of one Vidur collective file."""
    groups: dict[tuple[str, int, int, int], list[float]] = defaultdict(list)
    for row in _rows(path):
        name = row.get("collective", "").strip()
        if not name:
            found = [k for k in row if k.startswith("time_stats.") and k.endswith(".median")]
            if not found:
                raise CalibrationError(f"{path}: no 'collective' or time_stats.<collective>.median column")
            name = found[0].split(".")[1]
        size = int(_number(path, row, "size"))
        world = int(_number(path, row, "num_workers"))
        per_node = int(_number(path, row, "devices_per_node")) if row.get("devices_per_node") else world
        groups[(name, size, world, per_node)].append(_number(path, row, f"time_stats.{name}.median") * 1e-3)
    if not groups:
        raise CalibrationError(f"{path}: no data rows")
    return [
        CollectiveSample(name, size, world, per_node, statistics.median(times))
        for (name, size, world, per_node), times in sorted(groups.items())
    ]


def catalog_model_name(name: str) -> str:
    """splitwise-sim's ``llama2-70b`` is the catalog's ``llama-2-70b``; other names pass through."""
    return re.sub(r"^([a-z]+)(\d)", r"\1-\2", name.strip().lower())


def read_iteration_file(path: Path, hardware: str | None = None) -> list[IterationSample]:
    """Rows of a splitwise-sim performance table (optionally only those of one ``hardware``)."""
    out: list[IterationSample] = []
    for row in _rows(path):
        if hardware is not None and row.get("hardware", hardware) != hardware:
            continue
        out.append(
            IterationSample(
                model=catalog_model_name(row.get("model", "")),
                tp=int(_number(path, row, "tensor_parallel")),
                prompt=int(_number(path, row, "prompt_size")),
                batch=int(_number(path, row, "batch_size")),
                generated=int(_number(path, row, "token_size")),
                prefill_s=_number(path, row, "prompt_time") * 1e-3,
                decode_s=_number(path, row, "token_time") * 1e-3,
            )
        )
    if not out:
        raise CalibrationError(f"{path}: no iteration rows")
    return out
