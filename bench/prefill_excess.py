"""What the measured prefill holds beyond the kernels we know: the evidence of docs/device-model.md, section 6.

    .venv/bin/python bench/prefill_excess.py

For every prefill configuration of the splitwise DGX-A100 table, per layer: the measured time, minus
Vidur's measured times of the layer's non-attention ops at that many tokens (Llama-3-70B, whose layer
has Llama-2-70B's shape and goes to 32,768 tokens; BLOOM has no profile and takes the calibrated model),
minus two allreduces of that size (Vidur's measurement, linear beyond its largest 64 MB), minus
attention at 57% of peak, minus the engine's per-iteration overheads spread over the layers. Prints ms
per layer; an analysis of the shared data, not a test.
"""

from __future__ import annotations

import csv
import statistics
from collections import defaultdict
from pathlib import Path

from llmtwin.calibrate.measured import read_collective_file, read_iteration_file
from llmtwin.hardware import HardwareCatalog
from llmtwin.models import ModelCatalog
from llmtwin.physics.graph import BatchShape
from llmtwin.physics.op_time import op_time
from llmtwin.physics.overhead import EngineCatalog
from llmtwin.physics.step import StepModel

MEASURED = Path(__file__).resolve().parents[2] / "shared" / "data" / "measured-a100"
LAYER_OPS = (
    "input_layernorm", "attn_pre_proj", "attn_rope", "attn_post_proj", "post_attention_layernorm",
    "mlp_up_proj", "mlp_act", "mlp_down_proj", "add", "add",
)  # fmt: skip
ATTENTION_PEAK_FRACTION = 0.57


def vidur_layer_ms() -> dict[tuple[int, int], float]:
    """(tokens, TP) -> summed median ms of one Llama-3-70B layer's non-attention ops."""
    out: dict[tuple[int, int], float] = {}
    with (MEASURED / "Meta-Llama-3-70B.mlp.csv").open() as fh:
        for row in csv.DictReader(fh):
            key = (int(row["num_tokens"]), int(row["num_tensor_parallel_workers"]))
            out[key] = sum(float(row[f"time_stats.{op}.median"]) for op in LAYER_OPS)
    return out


def allreduce_ms(samples: dict[int, list[tuple[int, float]]], world: int, size: float) -> float:
    """Vidur's measured allreduce of ``size`` bytes (linear in size beyond the largest measured)."""
    pts = samples[world]
    s, t = min(pts, key=lambda p: abs(p[0] - size))
    return t * 1e3 * (size / s if size > s else 1.0)


def main() -> None:
    if not MEASURED.is_dir():
        print(f"measured data not found at {MEASURED}")
        return
    vidur = vidur_layer_ms()
    rings: dict[int, list[tuple[int, float]]] = defaultdict(list)
    for c in read_collective_file(MEASURED / "a100_dgx.all_reduce.csv"):
        if c.intra_node:
            rings[c.world].append((c.size_bytes, c.time_s))
    hw = HardwareCatalog().get("a100-80g")
    engine = EngineCatalog().get("splitwise-dgx-a100")
    times: dict[tuple[str, int, int, int], list[float]] = defaultdict(list)
    for s in read_iteration_file(MEASURED / "splitwise_dgx_a100_iterations.csv"):
        times[(s.model, s.tp, s.batch, s.prompt)].append(s.prefill_s * 1e3)
    print(
        f"{'model':12s} {'TP':>2s} {'batch x prompt':>14s} {'tokens':>6s} {'measured':>9s} {'known':>7s} {'excess':>7s}  (ms per layer)"
    )
    for (model, tp, batch, prompt), values in sorted(
        times.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] * kv[0][3])
    ):
        tokens = batch * prompt
        if tokens < 1024:
            continue
        spec = ModelCatalog().get(model)
        sm = StepModel(hw, spec, tp, check_fit=False)
        shape = BatchShape.prefill(batch, prompt)
        layer = [op for op in sm.ops_one_layer(shape) if op.layer == 0]
        attention = sum(op.flops for op in layer if op.kind == "attention")
        known = attention / (hw.compute_peak("bf16") * ATTENTION_PEAK_FRACTION) * 1e3
        if model == "llama-2-70b" and (tokens, tp) in vidur:
            known += vidur[(tokens, tp)] + 2 * allreduce_ms(rings, tp, tokens * spec.hidden * 2)
        else:
            known += sum(op_time(hw, op, sm.prec, tp) for op in layer if op.kind != "attention") * 1e3
        known += engine.overhead(spec.layers, batch, prefill=True) * 1e3 / spec.layers
        measured = statistics.median(values) / spec.layers
        print(
            f"{model:12s} {tp:2d} {f'{batch} x {prompt}':>14s} {tokens:6d} {measured:9.2f} {known:7.2f} {measured - known:7.2f}"
        )


if __name__ == "__main__":
    main()
