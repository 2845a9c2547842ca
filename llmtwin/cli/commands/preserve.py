"""``llmtwin preserve``: one decode step under vanilla, fused GEMM+allreduce and PRESERVE."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from llmtwin.cli.commands import COMMANDS
from llmtwin.cli.common import add_device_args, int_list, print_json, step_model
from llmtwin.errors import ConfigurationError
from llmtwin.physics.graph import BatchShape
from llmtwin.physics.step import StepModel
from llmtwin.preserve import FusedConfig, PreserveConfig, StepComparison, compare_step, step_times
from llmtwin.preserve.config import CONTENTIONS, PRIORITIES
from llmtwin.preserve.die_cost import MIB
from llmtwin.preserve.report import layer_detail, layer_rows

DEFAULT_OUT = Path("out/preserve")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "preserve",
        help=COMMANDS["preserve"].help,
        description="Plan PRESERVE prefetches for one decode step and compare the step time with the "
        "serial (vanilla) and fused GEMM+allreduce baselines. See docs/preserve.md.",
    )
    add_device_args(p)
    p.add_argument("--batch", type=int, default=8, help="decode sequences in the step")
    p.add_argument("--context", type=int, default=16384, help="cached tokens per sequence")
    p.add_argument("--layer", type=int, default=None, help="layer shown in detail (default: the middle one)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table (no PNG)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="directory for the PNG timeline")
    p.add_argument(
        "--grid-batches", default=None, help="also a speedup grid over these batch sizes (comma list)"
    )
    p.add_argument("--grid-contexts", default=None, help="... and these context lengths (default: --context)")
    add_planner_args(p)
    f = p.add_argument_group("fused GEMM+allreduce baseline")
    f.add_argument("--fused-max-chunks", type=int, default=FusedConfig().max_chunks, help="most chunks tried")
    f.add_argument("--fused-alpha-exposed", action="store_true",
                   help="the allreduce's fixed latency follows the last chunk instead of overlapping the GEMM")  # fmt: skip
    p.set_defaults(func=run)


def fused_config(args: argparse.Namespace) -> FusedConfig:
    return FusedConfig(max_chunks=args.fused_max_chunks, hides_alpha=not args.fused_alpha_exposed)


def add_planner_args(p: argparse.ArgumentParser) -> None:
    """The planner's open choices (PreserveConfig) and the hardware's L2 size."""
    d = PreserveConfig()
    g = p.add_argument_group("PRESERVE planner (defaults: docs/preserve.md)")
    g.add_argument("--l2-mb", type=float, default=None, help="L2 capacity in MiB (default: the hardware's)")
    g.add_argument("--budget-mb", type=float, default=None, help="cap on bytes prefetched per window, MiB")
    g.add_argument("--priority", choices=PRIORITIES, default=d.priority, help="prefetch order in a window")
    g.add_argument("--contention", choices=CONTENTIONS, default=d.contention, help="HBM sharing model")
    g.add_argument("--no-extend-window", action="store_true", help="prefetch during the allreduce only")
    g.add_argument("--no-partial", action="store_true", help="prefetch whole tensors only")
    g.add_argument("--horizon", type=int, default=d.horizon_windows, help="allreduces a window looks ahead")
    g.add_argument("--streaming-allocates", action="store_true",
                   help="streamed HBM reads allocate in an LRU L2 and can evict prefetched lines")  # fmt: skip
    g.add_argument("--prefetch-overhead-us", type=float, default=d.prefetch_op_overhead_s * 1e6,
                   help="side-stream time per prefetch op, us")  # fmt: skip
    g.add_argument("--prefetch-bw-fraction", type=float, default=d.prefetch_bandwidth_fraction,
                   help="prefetch DMA bandwidth as a fraction of streaming HBM bandwidth")  # fmt: skip


def planner_config(args: argparse.Namespace) -> PreserveConfig:
    return PreserveConfig(
        budget_bytes=None if args.budget_mb is None else args.budget_mb * MIB,
        extend_window=not args.no_extend_window,
        priority=args.priority,
        partial=not args.no_partial,
        horizon_windows=args.horizon,
        contention=args.contention,
        prefetch_bandwidth_fraction=args.prefetch_bw_fraction,
        prefetch_op_overhead_s=args.prefetch_overhead_us * 1e-6,
        streaming_allocates=args.streaming_allocates,
    )


def l2_capacity(args: argparse.Namespace) -> float | None:
    if args.l2_mb is None:
        return None
    if args.l2_mb < 0:
        raise ConfigurationError(f"--l2-mb must be >= 0, got {args.l2_mb}")
    return float(args.l2_mb * MIB)


def run(args: argparse.Namespace) -> int:
    if args.batch < 1 or args.context < 0:
        raise ConfigurationError(
            f"--batch must be >= 1 and --context >= 0, got {args.batch} and {args.context}"
        )
    sm = step_model(args)
    need = args.batch * (args.context + 1)
    if need > sm.kv_capacity_tokens():
        raise ConfigurationError(
            f"{args.batch} x {args.context} tokens of KV cache do not fit next to the weights of "
            f"{sm.model.name} at TP {sm.tp} on {sm.hw.name} (room for {sm.kv_capacity_tokens()} tokens)"
        )
    config = planner_config(args)
    cmp = compare_step(
        sm, BatchShape.decode(args.batch, args.context), config, fused_config(args), l2_capacity(args)
    )
    layer = sm.model.layers // 2 if args.layer is None else args.layer
    if not 0 <= layer < sm.model.layers:
        raise ConfigurationError(f"--layer must be in 0..{sm.model.layers - 1}, got {layer}")
    out = summary(args, cmp)
    grid = speedup_grid(args, sm, config) if args.grid_batches or args.grid_contexts else None
    if args.json:
        out["layers"] = layer_rows(cmp)
        out["detail"] = layer_detail(cmp, layer)
        if grid is not None:
            out["grid"] = grid
        print_json(out)
        return 0
    print_table(out, cmp, layer)
    if grid is not None:
        print_grid(grid)
    title = (f"{sm.model.name} TP{sm.tp} {sm.prec.label()} on {sm.hw.name}, batch {args.batch} x "
             f"{args.context}: vanilla {out['vanilla_step_s'] * 1e3:.2f} ms, fused {out['fused_step_s'] * 1e3:.2f} ms, "
             f"PRESERVE {out['preserve_step_s'] * 1e3:.2f} ms ({out['speedup']:.3f}x)")  # fmt: skip
    from llmtwin.preserve.plots import timeline_png  # matplotlib: only when plotting

    path = timeline_png(cmp, layer, 2, args.out / "preserve_timeline.png", title)
    print(f"wrote {path}")
    return 0


def summary(args: argparse.Namespace, cmp: StepComparison) -> dict[str, Any]:
    """The step times (engine included, as ``llmtwin step`` prices them) and the plan's totals."""
    return {
        "vanilla_step_s": cmp.vanilla_step_s,
        "fused_step_s": cmp.fused_step_s,
        "preserve_step_s": cmp.preserve_step_s,
        "speedup": cmp.speedup,
        "fused_speedup": cmp.fused_speedup,
        "vanilla_device_s": cmp.vanilla.step_s,
        "fused_device_s": cmp.fused.step_s,
        "preserve_device_s": cmp.preserve.step_s,
        "hardware": args.hardware,
        "model": args.model,
        "tp": args.tp,
        "precision": args.precision,
        "engine": args.engine,
        "batch": args.batch,
        "context": args.context,
        "l2_bytes": cmp.costs.l2_capacity,
        "engine_overhead_s": cmp.engine.serial_s,
        "per_kernel_launch_s": cmp.engine.launch_s,
        "windows": len(cmp.plan.windows),
        "prefetched_bytes": cmp.plan.prefetched_bytes,
        "l2_hit_bytes": sum(s.l2_bytes for s in cmp.preserve.ops),
        "wait_s": cmp.preserve.wait_s,
        "declined": cmp.plan.declined,
        "config": cmp_config(args),
    }


def cmp_config(args: argparse.Namespace) -> dict[str, Any]:
    return {"preserve": planner_config(args).to_dict(), "fused": fused_config(args).to_dict()}


def print_table(out: dict[str, Any], cmp: StepComparison, layer: int) -> None:
    mib = out["l2_bytes"] / MIB
    print(f"{out['model']} TP {out['tp']} {out['precision']} on {out['hardware']} (L2 {mib:g} MiB): "
          f"decode batch {out['batch']} x {out['context']} context")  # fmt: skip
    print(f"  vanilla   {out['vanilla_step_s'] * 1e3:9.3f} ms")
    print(f"  fused     {out['fused_step_s'] * 1e3:9.3f} ms   {out['fused_speedup']:.3f}x")
    print(f"  PRESERVE  {out['preserve_step_s'] * 1e3:9.3f} ms   {out['speedup']:.3f}x")
    if out["engine_overhead_s"] > 0 or out["per_kernel_launch_s"] > 0:
        print(f"  engine {out['engine']}: {out['engine_overhead_s'] * 1e3:.3f} ms serial, "
              f"{out['per_kernel_launch_s'] * 1e6:.1f} us dispatch per kernel; device work alone: vanilla "
              f"{out['vanilla_device_s'] * 1e3:.3f}, fused {out['fused_device_s'] * 1e3:.3f}, "
              f"PRESERVE {out['preserve_device_s'] * 1e3:.3f} ms")  # fmt: skip
    print(f"  prefetched {out['prefetched_bytes'] / 1e9:.2f} GB per step in {out['windows']} windows, "
          f"read from L2 {out['l2_hit_bytes'] / 1e9:.2f} GB, consumers waited {out['wait_s'] * 1e6:.1f} us")  # fmt: skip
    if out["declined"]:
        print(f"  planner declined: {out['declined']}")
    detail = layer_detail(cmp, layer)
    print(f"\nlayer {layer}, PRESERVE main stream:")
    print(f"  {'op':28s} {'start_us':>9s} {'dur_us':>8s} {'vanilla_us':>10s} {'from_L2_MB':>10s}")
    t0 = detail["ops"][0]["start_s"]
    for o in detail["ops"]:
        print(f"  {o['name']:28s} {(o['start_s'] - t0) * 1e6:9.1f} {(o['end_s'] - o['start_s']) * 1e6:8.1f} "
              f"{o['vanilla_s'] * 1e6:10.1f} {o['l2_bytes'] / 1e6:10.2f}")  # fmt: skip
    for w in detail["windows"]:
        print(f"\n  window at {w['allreduce_name']}: {w['window_s'] * 1e6:.1f} us, could move "
              f"{w['window_bytes'] / 1e6:.1f} MB, L2 free {w['l2_free_bytes'] / 1e6:.1f} MB, saves "
              f"{w['saving_s'] * 1e6:.1f} us")  # fmt: skip
        for it in w["items"]:
            part = " (partial)" if it["partial"] else ""
            print(f"    {it['order']}: {it['tensor']:12s} -> {it['consumer_name']:16s} {it['bytes'] / 1e6:8.2f} of "
                  f"{it['tensor_bytes'] / 1e6:.2f} MB{part}, {it['start_s'] * 1e6:.1f}-{it['end_s'] * 1e6:.1f} us")  # fmt: skip


def speedup_grid(args: argparse.Namespace, sm: StepModel, config: PreserveConfig) -> list[dict[str, Any]]:
    """PRESERVE and fused speedups over batch x context (the shape of the paper's Figures 4 and 5);
    cells whose KV cache does not fit in HBM are marked ``fits: false`` (the paper's N/A)."""
    batches = int_list(args.grid_batches) if args.grid_batches else [args.batch]
    contexts = int_list(args.grid_contexts) if args.grid_contexts else [args.context]
    capacity = sm.kv_capacity_tokens()
    cells: list[dict[str, Any]] = []
    for b in batches:
        for c in contexts:
            cell: dict[str, Any] = {"batch": b, "context": c, "fits": b * (c + 1) <= capacity}
            if cell["fits"]:
                t = step_times(
                    sm, BatchShape.decode(b, c), config, l2_capacity(args), fused=fused_config(args)
                )
                cell.update(speedup=t.speedup, fused_speedup=t.fused_speedup, vanilla_step_s=t.vanilla_s)
            cells.append(cell)
    return cells


def print_grid(grid: list[dict[str, Any]]) -> None:
    contexts = sorted({c["context"] for c in grid})
    batches = sorted({c["batch"] for c in grid})
    by = {(c["batch"], c["context"]): c for c in grid}
    for key, label in (("speedup", "PRESERVE speedup"), ("fused_speedup", "fused GEMM+allreduce speedup")):
        print(f"\n{label} (rows: batch, columns: context; N/A: KV cache does not fit in HBM)")
        print("  batch " + "".join(f"{c:>9d}" for c in contexts))
        for b in batches:
            row = [f"{by[(b, c)][key]:9.3f}" if by[(b, c)]["fits"] else f"{'N/A':>9s}" for c in contexts]
            print(f"  {b:5d} " + "".join(row))
