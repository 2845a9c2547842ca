"""``llmtwin step``: the cost of one iteration, op by op.

``--json`` prints ``{"time_s", "time_low_s", "time_high_s", "band", "device_time_s",
"engine_overhead_s", "ops": [{"name", "layer", "time_s", "hbm_bytes", "l2_bytes", "flops"}, ...]}``;
``time_s`` includes the engine profile (``--engine``), the ops are device work only.
``time_low_s`` / ``time_high_s`` bound the measured time for 80% of the calibration points of this
region (``band``: the multipliers and where they come from; docs/device-model.md, section 5b). ``--preserve`` serves the weights and KV that the
PRESERVE planner (llmtwin/preserve, docs/preserve.md) prefetches during allreduces from L2.
"""

from __future__ import annotations

import argparse
from collections import defaultdict

from llmtwin.cli.commands import COMMANDS
from llmtwin.cli.common import add_device_args, print_json, step_model
from llmtwin.errors import ConfigurationError
from llmtwin.physics.graph import BatchShape
from llmtwin.physics.uncertainty import iteration_band
from llmtwin.preserve import plan_step_l2


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("step", help=COMMANDS["step"].help)
    add_device_args(p)
    p.add_argument("--phase", choices=("prefill", "decode"), required=True, help="which iteration")
    p.add_argument("--batch", type=int, default=1, help="sequences in the batch")
    p.add_argument("--prompt", type=int, help="prefill: prompt tokens per sequence")
    p.add_argument("--context", type=int, help="decode: cached tokens per sequence")
    p.add_argument("--preserve", action="store_true", help="apply the PRESERVE L2-prefetch plan")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def batch_shape(args: argparse.Namespace) -> BatchShape:
    """The iteration the arguments describe; one clear error when they do not fit together."""
    if args.batch < 1:
        raise ConfigurationError(f"--batch must be >= 1, got {args.batch}")
    if args.phase == "prefill":
        if args.prompt is None or args.context is not None:
            raise ConfigurationError("--phase prefill takes --prompt (and not --context)")
        if args.prompt < 1:
            raise ConfigurationError(f"--prompt must be >= 1, got {args.prompt}")
        return BatchShape.prefill(args.batch, args.prompt)
    if args.context is None or args.prompt is not None:
        raise ConfigurationError("--phase decode takes --context (and not --prompt)")
    if args.context < 0:
        raise ConfigurationError(f"--context must be >= 0, got {args.context}")
    return BatchShape.decode(args.batch, args.context)


def run(args: argparse.Namespace) -> int:
    sm = step_model(args)
    shape = batch_shape(args)
    tokens_needed = args.batch * ((args.prompt or 0) + (args.context or 0) + 1)
    if tokens_needed > sm.kv_capacity_tokens():
        raise ConfigurationError(
            f"the KV cache of {tokens_needed} tokens does not fit next to the weights of {sm.model.name} "
            f"at TP {sm.tp} on {sm.hw.name} (room for {sm.kv_capacity_tokens()} tokens)"
        )
    l2 = plan_step_l2(sm, shape) if args.preserve else None
    timeline = sm.timeline(shape, l2_bytes=l2)
    device_s = sum(t.time_s for t in timeline)
    # Without a plan both terms use the same per-layer arithmetic, so the engine's share is
    # exactly 0 for the ``none`` engine; with one, time() prices the prefetched op times.
    engine_s = sm.time(shape, l2) - (device_s if l2 else sm.device_time(shape))
    total_s = device_s + engine_s
    band = sm.band(shape)
    source = "engine iterations" if iteration_band(sm.hw, sm.engine, sm.tp, shape) else "device ops"
    if args.json:
        print_json(
            {
                "hardware": sm.hw.name, "model": sm.model.name, "tp": sm.tp, "phase": args.phase,
                "batch": args.batch, "engine": sm.engine.name, "preserve": bool(args.preserve),
                "time_s": total_s, "time_low_s": total_s * band.low, "time_high_s": total_s * band.high,
                "band": {"low": band.low, "high": band.high, "from": source,
                         "transfer_uncertainty": sm.hw.transfer_uncertainty},
                "device_time_s": device_s, "engine_overhead_s": engine_s,
                "ops": [
                    {"name": t.name, "layer": t.layer, "time_s": t.time_s, "hbm_bytes": t.hbm_bytes,
                     "l2_bytes": t.l2_bytes, "flops": t.flops}
                    for t in timeline
                ],
            }
        )  # fmt: skip
        return 0
    per_op: dict[str, float] = defaultdict(float)
    for t in timeline:
        per_op[t.name] += t.time_s
    print(
        f"{sm.model.name} on {sm.tp} x {sm.hw.name}, {args.phase} batch {args.batch}: "
        f"{total_s * 1e3:.3f} ms ({device_s * 1e3:.3f} ms device, engine {sm.engine.name}); "
        f"80% band {total_s * band.low * 1e3:.3f}-{total_s * band.high * 1e3:.3f} ms ({source})"
    )
    for name, s in sorted(per_op.items(), key=lambda kv: -kv[1]):
        print(f"  {name:26s} {s * 1e3:10.3f} ms  {100 * s / device_s:5.1f}%")
    return 0
