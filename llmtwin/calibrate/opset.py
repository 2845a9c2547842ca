"""Measured operator samples as arrays, and the model's prediction for all of them at once.

Each measured (model, op, tokens, TP) point is turned into the very :class:`Op` the simulator
builds (same graph code), and its FLOPs and bytes are stacked into arrays, one group per op name.
:func:`predict` then evaluates the roofline formulas of :mod:`llmtwin.physics.roofline` on those
arrays, so a fit over tens of thousands of points takes milliseconds per evaluation.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from llmtwin.calibrate.measured import ModelDims, OpSample
from llmtwin.hardware.spec import HardwareSpec
from llmtwin.models.spec import ModelSpec
from llmtwin.physics.graph import BatchShape, MemoryClass, Op, OpKind, build_graph
from llmtwin.physics.precision import Precision
from llmtwin.physics.roofline import gemm_time, memory_kernel_time

Array = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class OpGroup:
    """All measured points of one op name, as arrays aligned with each other."""

    op: str
    kind: OpKind
    memory_class: MemoryClass
    row_parallel: bool
    flops: Array
    hbm_bytes: Array
    rows: Array
    tokens: Array
    tp: Array
    model: npt.NDArray[np.str_]
    measured_s: Array


def model_spec(dims: ModelDims) -> ModelSpec:
    """A one-layer :class:`ModelSpec` with the dimensions a Vidur file records."""
    return ModelSpec(
        name=dims.name,
        hidden=dims.hidden,
        layers=1,
        heads=dims.heads,
        kv_heads=dims.kv_heads,
        head_dim=dims.hidden // dims.heads,
        intermediate=dims.intermediate,
        vocab=dims.vocab,
        gated_mlp=dims.gated_mlp,
        activation="silu" if dims.gated_mlp else "gelu",
        norm="rmsnorm",
        positional="rope",
        tied_embeddings=False,
    )


def layer_ops(model: ModelSpec, tp: int, tokens: int, prec: Precision) -> dict[str, Op]:
    """The first op of each name in one layer's graph for ``tokens`` rows (prefill shape)."""
    ops: dict[str, Op] = {}
    for op in build_graph(model, tp, BatchShape.prefill(1, tokens), prec):
        ops.setdefault(op.name, op)
    return ops


def group_samples(samples: list[OpSample], prec: Precision) -> list[OpGroup]:
    """Arrays per op name; samples of ops the graph does not build (e.g. rope of an ALiBi
    model) are dropped."""
    cols: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    models: dict[str, list[str]] = defaultdict(list)
    meta: dict[str, Op] = {}
    cache: dict[tuple[str, int, int], dict[str, Op]] = {}
    specs: dict[str, ModelSpec] = {}
    for s in samples:
        spec = specs.setdefault(s.dims.name, model_spec(s.dims))
        key = (s.dims.name, s.tp, s.tokens)
        if key not in cache:
            cache[key] = layer_ops(spec, s.tp, s.tokens, prec)
        op = cache[key].get(s.op)
        if op is None:
            continue
        meta.setdefault(s.op, op)
        c = cols[s.op]
        c["flops"].append(op.flops)
        c["hbm_bytes"].append(op.hbm_bytes)
        c["rows"].append(float(max(op.rows, 1)))
        c["tokens"].append(float(s.tokens))
        c["tp"].append(float(s.tp))
        c["measured_s"].append(s.time_s)
        models[s.op].append(s.dims.name)
    return [
        OpGroup(
            op=name,
            kind=meta[name].kind,
            memory_class=meta[name].memory_class,
            row_parallel=meta[name].rows > 0,
            flops=np.array(c["flops"]),
            hbm_bytes=np.array(c["hbm_bytes"]),
            rows=np.array(c["rows"]),
            tokens=np.array(c["tokens"]),
            tp=np.array(c["tp"]),
            model=np.array(models[name]),
            measured_s=np.array(c["measured_s"]),
        )
        for name, c in cols.items()
    ]


def predict(hw: HardwareSpec, group: OpGroup, prec: Precision) -> Array:
    """Predicted seconds for every point of ``group`` (same formulas as the simulator)."""
    zeros = np.zeros_like(group.flops)
    if group.kind == "gemm":
        return gemm_time(hw, group.flops, group.hbm_bytes, zeros, prec.compute_dtype)
    rows = group.rows if group.row_parallel else None
    return memory_kernel_time(hw, group.flops, group.hbm_bytes, group.memory_class, rows)
