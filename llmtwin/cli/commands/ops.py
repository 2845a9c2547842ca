"""``llmtwin ops``: predicted time of each per-layer op over a sweep of token counts.

``--format vidur-csv`` writes Vidur's operator-profile schema (``time_stats.<op>.median`` in ms
per layer, per device, plus the model-dimension columns), so the output can be compared with a
Vidur profile, fed to another simulator, or given back to ``llmtwin calibrate --ops``.
``--format json`` also gives each op's 80% band from the calibration residuals of its class and
region: ``"band": {op: [low_ms, high_ms]}`` per row (docs/device-model.md, section 5b).
"""

from __future__ import annotations

import argparse
import csv
import sys

from llmtwin.cli.commands import COMMANDS
from llmtwin.cli.common import add_device_args, int_list, print_json, step_model
from llmtwin.physics.graph import VIDUR_OPS, BatchShape
from llmtwin.physics.op_time import op_time
from llmtwin.physics.step import StepModel
from llmtwin.physics.uncertainty import op_band

EXAMPLE_TOKENS = ",".join(str(1 << i) for i in range(13))


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("ops", help=COMMANDS["ops"].help)
    add_device_args(p)
    p.add_argument(
        "--tokens", required=True, help=f"comma-separated token counts (GEMM rows), e.g. {EXAMPLE_TOKENS}"
    )
    p.add_argument("--format", choices=("vidur-csv", "json", "table"), default="table", help="output format")
    p.set_defaults(func=run)


def op_times_ms(sm: StepModel, tokens: int) -> dict[str, tuple[float, float, float]]:
    """(ms, band low ms, band high ms) of each Vidur-named op present in one layer with ``tokens`` rows."""
    out: dict[str, tuple[float, float, float]] = {}
    for op in sm.ops_one_layer(BatchShape.prefill(1, tokens)):
        if op.name in VIDUR_OPS and op.name not in out:
            t = op_time(sm.hw, op, sm.prec, sm.tp) * 1e3
            band = op_band(sm.hw, op, sm.tp, tokens)
            out[op.name] = (t, t * band.low, t * band.high)
    return out


def run(args: argparse.Namespace) -> int:
    # Per-layer op times are meaningful even where the whole model would not fit (Vidur profiles
    # Llama-2-70B at TP1), so only the shape checks apply here, not the HBM-capacity one.
    sm = step_model(args, check_fit=False)
    sweep = int_list(args.tokens)
    rows = [(t, op_times_ms(sm, t)) for t in sweep]
    present = [op for op in VIDUR_OPS if any(op in r for _, r in rows)]
    if args.format == "json":
        print_json(
            {"hardware": sm.hw.name, "model": sm.model.name, "tp": sm.tp, "unit": "ms",
             "transfer_uncertainty": sm.hw.transfer_uncertainty,
             "rows": [{"num_tokens": t, **{op: v[0] for op, v in r.items()},
                       "band": {op: [v[1], v[2]] for op, v in r.items()}} for t, r in rows]}
        )  # fmt: skip
        return 0
    if args.format == "table":
        print("tokens " + " ".join(f"{op[:12]:>12}" for op in present) + "   (ms, per layer, per device)")
        for t, r in rows:
            print(f"{t:6d} " + " ".join(f"{r[op][0]:12.4f}" for op in present))
        return 0
    m = sm.model
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(
        [*(f"time_stats.{op}.median" for op in VIDUR_OPS), "n_head", "n_kv_head", "n_embd", "n_expanded_embd",
         "vocab_size", "use_gated_mlp", "num_tokens", "num_tensor_parallel_workers"]
    )  # fmt: skip
    for t, r in rows:
        times = [f"{r[op][0]:.6g}" if op in r else "" for op in VIDUR_OPS]
        writer.writerow(
            [*times, m.heads, m.kv_heads, m.hidden, m.intermediate, m.vocab, m.gated_mlp, t, sm.tp]
        )
    return 0
