"""``llmtwin l2-sweep``: perf per cost against L2 size, with and without PRESERVE.

``--vary NAME=V1,V2,...`` (``allreduce_alpha_us``, ``l2_hbm_ratio``; repeatable) reruns the sweep on
every combination of those inputs and reports the answers and their range (``sensitivity`` in the
JSON): the bands docs/preserve.md quotes for the inputs no device measurement fixes.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from llmtwin.cli.commands import COMMANDS
from llmtwin.cli.commands.preserve import add_planner_args, planner_config
from llmtwin.cli.common import add_device_args, int_list, print_json, step_model
from llmtwin.errors import ConfigurationError
from llmtwin.physics.step import StepModel
from llmtwin.preserve.die_cost import COST_SOURCES, CostModel
from llmtwin.preserve.report import sweep_dict
from llmtwin.preserve.sensitivity import (
    INPUTS,
    SensitivityPoint,
    band_of,
    l2_hbm_ratio,
    point_of,
    sensitivity,
)
from llmtwin.preserve.sweep import DEFAULT_BATCHES, DEFAULT_CONTEXTS, DEFAULT_L2_MIB, SweepResult, sweep_l2

DEFAULT_OUT = Path("out/preserve")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "l2-sweep",
        help=COMMANDS["l2-sweep"].help,
        description="Sweep the L2 size of a hardware template over a decode workload mix, with and "
        "without PRESERVE prefetching, and find the perf-per-cost optimum. See docs/preserve.md.",
    )
    add_device_args(p)
    p.add_argument("--l2-sizes", default=",".join(f"{x:g}" for x in DEFAULT_L2_MIB),
                   help="comma-separated L2 sizes, MiB")  # fmt: skip
    p.add_argument("--batches", default=",".join(map(str, DEFAULT_BATCHES)), help="workload-mix batch sizes")
    p.add_argument(
        "--contexts", default=",".join(map(str, DEFAULT_CONTEXTS)), help="workload-mix context lengths"
    )
    p.add_argument("--cost", action="append", default=[], metavar="NAME=VALUE",
                   help=f"override a cost parameter ({', '.join(COST_SOURCES)})")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print JSON instead of a table (no PNG)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="directory for the PNG")
    p.add_argument(
        "--vary", action="append", default=[], metavar="NAME=V1,V2,...",
        help=f"rerun the sweep over these values of an uncalibrated input ({', '.join(INPUTS)}) and "
        "report the range of the answers",
    )  # fmt: skip
    add_planner_args(p)
    p.set_defaults(func=run)


def float_list(text: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigurationError(f"expected a comma-separated list of numbers, got {text!r}") from None
    if not values or any(v < 0 for v in values):
        raise ConfigurationError(f"expected sizes >= 0, got {text!r}")
    return values


def cost_model(pairs: list[str]) -> CostModel:
    values: dict[str, float] = {}
    for item in pairs:
        name, sep, value = item.partition("=")
        try:
            values[name.strip()] = float(value)
        except ValueError:
            raise ConfigurationError(f"--cost expects NAME=NUMBER, got {item!r}") from None
        if not sep:
            raise ConfigurationError(f"--cost expects NAME=NUMBER, got {item!r}")
    return CostModel().with_overrides(values)


def run(args: argparse.Namespace) -> int:
    if args.l2_mb is not None:
        raise ConfigurationError("l2-sweep sets the L2 size itself: use --l2-sizes, not --l2-mb")
    sm = step_model(args)
    cost = cost_model(args.cost)
    sizes, batches, contexts, config = (
        float_list(args.l2_sizes),
        int_list(args.batches),
        int_list(args.contexts),
        planner_config(args),
    )

    def sweep(model: StepModel) -> SweepResult:
        return sweep_l2(model, sizes, batches, contexts, config, cost)

    result = sweep(sm)
    out = {"hardware": args.hardware, "model": args.model, "tp": args.tp, "precision": args.precision}
    out.update(sweep_dict(result, cost))
    grid = vary_grid(args.vary)
    points = sensitivity(sm, grid, sweep) if grid else []
    if points:
        out["sensitivity"] = {
            "nominal": {"allreduce_alpha_us": sm.hw.efficiency.allreduce_alpha_s * 1e6,
                        "l2_hbm_ratio": l2_hbm_ratio(sm.hw), **dataclasses.asdict(point_of({}, result))},
            "points": [dataclasses.asdict(p) for p in points],
            "band": band_of(points),
        }  # fmt: skip
    if args.json:
        print_json(out)
        return 0
    print_table(out, result)
    if points:
        print_sensitivity(points)
    title = f"{sm.model.name} TP{sm.tp} {sm.prec.label()} on an {sm.hw.name} template, L2 swept"
    from llmtwin.preserve.plots import sweep_png  # matplotlib: only when plotting

    print(f"wrote {sweep_png(result, args.out / 'l2_sweep.png', title)}")
    return 0


def vary_grid(items: list[str]) -> dict[str, list[float]]:
    grid: dict[str, list[float]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        if not sep:
            raise ConfigurationError(f"--vary expects NAME=V1,V2,..., got {item!r}")
        grid[name.strip()] = float_list(values)
    return grid


def print_sensitivity(points: list[SensitivityPoint]) -> None:
    names = list(points[0].inputs)
    print(
        "\n"
        + " ".join(f"{n:>18s}" for n in names)
        + "  optimum MiB  perf/cost gain  speedup@opt  max speedup"
    )
    for p in points:
        print(" ".join(f"{p.inputs[n]:18g}" for n in names)
              + f"  {p.with_prefetch_mb:11g}  {p.perf_per_cost_gain:13.3f}  {p.speedup_at_optimum:11.3f}"
              f"  {p.max_speedup:11.3f}")  # fmt: skip
    for name, (lo, hi) in band_of(points).items():
        print(f"  {name}: {lo:.4g} to {hi:.4g}")


def print_table(out: dict[str, object], result: SweepResult) -> None:
    mix = ", ".join(f"{w.batch}x{w.context}" for w in result.workloads)
    print(f"{out['model']} TP {out['tp']} {out['precision']} on an {out['hardware']} template")
    print(f"workload mix (batch x context): {mix}")
    if result.excluded:
        print(
            "left out (KV does not fit in HBM): "
            + ", ".join(f"{w.batch}x{w.context}" for w in result.excluded)
        )
    print(f"\n{'L2 MiB':>7s} {'cost USD':>9s} {'tok/s':>9s} {'tok/s/kUSD':>10s} {'tok/s PF':>9s} "
          f"{'tok/s/kUSD PF':>13s} {'speedup':>8s}")  # fmt: skip
    by = {(r.l2_mb, r.prefetch): r for r in result.rows}
    for mib in sorted({r.l2_mb for r in result.rows}):
        a, b = by[(mib, False)], by[(mib, True)]
        print(f"{mib:7g} {a.cost:9.0f} {a.perf:9.1f} {a.perf_per_cost * 1e3:10.3f} {b.perf:9.1f} "
              f"{b.perf_per_cost * 1e3:13.3f} {b.perf / a.perf:8.3f}")  # fmt: skip
    o = result.optimum
    print(f"\noptimum L2: {o.without_prefetch_mb:g} MiB without prefetch, {o.with_prefetch_mb:g} MiB with "
          f"PRESERVE; perf/cost gain {o.perf_per_cost_gain:.3f}x")  # fmt: skip
