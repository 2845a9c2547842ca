"""PNG figures for ``llmtwin preserve`` and ``llmtwin l2-sweep`` (matplotlib's Agg canvas, no pyplot)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from llmtwin.preserve.evaluate import StepComparison
from llmtwin.preserve.sweep import SweepResult
from llmtwin.preserve.timeline import OpSpan, PrefetchSpan

_KIND_COLOURS = {
    "gemm": "#4C72B0",
    "attention": "#DD8452",
    "collective": "#C44E52",
    "fused": "#8172B3",
    "elementwise": "#A0A0A0",
    "norm": "#A0A0A0",
    "embedding": "#A0A0A0",
}
_PREFETCH_COLOURS = {"weight": "#55A868", "kv": "#64B5CD"}


def timeline_png(cmp: StepComparison, first_layer: int, layers: int, path: Path, title: str) -> Path:
    """Gantt chart of ``layers`` consecutive layers from ``first_layer``: vanilla, fused and the
    PRESERVE main and prefetch streams, each aligned on the start of ``first_layer``."""
    wanted = set(range(first_layer, first_layer + layers))
    lanes: list[tuple[str, list[tuple[float, float, str]]]] = []
    for label, spans in (("vanilla", cmp.vanilla.ops), ("fused GEMM+AR", cmp.fused.ops),
                         ("PRESERVE main", cmp.preserve.ops)):  # fmt: skip
        lanes.append((label, _bars(spans, wanted)))
    origin = min((s.start_s for s in cmp.preserve.ops if s.layer == first_layer), default=0.0)
    kinds = {it.tensor: it.kind for it in cmp.plan.items}
    prefetch = [
        (p.start_s - origin, p.end_s - p.start_s, _PREFETCH_COLOURS[kinds.get(p.tensor, "weight")])
        for p in cmp.preserve.prefetches
        if _in_layers(cmp.preserve.ops, p, wanted)
    ]
    lanes.append(("PRESERVE prefetch", prefetch))
    fig = Figure(figsize=(12, 3.6), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for row, (_, bars) in enumerate(reversed(lanes)):
        for start, width, colour in bars:
            ax.broken_barh([(start * 1e6, width * 1e6)], (row - 0.35, 0.7), facecolors=colour,
                           edgecolors="white", linewidth=0.3)  # fmt: skip
    ax.set_yticks(range(len(lanes)), [name for name, _ in reversed(lanes)])
    ax.set_xlabel(f"time from the start of layer {first_layer} (us)")
    ax.set_title(title, fontsize=10)
    handles = [Patch(color=c, label=k) for k, c in _KIND_COLOURS.items() if k not in ("norm", "embedding")]
    handles += [Patch(color=c, label=f"prefetch {k}") for k, c in _PREFETCH_COLOURS.items()]
    ax.legend(
        handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.28), ncol=8, fontsize=8, frameon=False
    )
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def _bars(spans: Sequence[OpSpan], layers: set[int]) -> list[tuple[float, float, str]]:
    chosen = [s for s in spans if s.layer in layers]
    if not chosen:
        return []
    origin = chosen[0].start_s
    return [(s.start_s - origin, s.duration_s, _KIND_COLOURS.get(s.kind, "#A0A0A0")) for s in chosen]


def _in_layers(ops: Sequence[OpSpan], p: PrefetchSpan, layers: set[int]) -> bool:
    return ops[p.allreduce].layer in layers


def sweep_png(result: SweepResult, path: Path, title: str) -> Path:
    """Perf per cost and perf against L2 size, with and without prefetching."""
    fig = Figure(figsize=(10, 4), dpi=120)
    FigureCanvasAgg(fig)
    ax_ppc = fig.add_subplot(1, 2, 1)
    ax_perf = fig.add_subplot(1, 2, 2)
    for flag, colour, label in ((False, "#4C72B0", "without prefetch"), (True, "#C44E52", "with PRESERVE")):
        rows = [r for r in result.rows if r.prefetch == flag]
        xs = [r.l2_mb for r in rows]
        ax_ppc.plot(xs, [r.perf_per_cost * 1e3 for r in rows], marker="o", ms=3, color=colour, label=label)
        ax_perf.plot(xs, [r.perf for r in rows], marker="o", ms=3, color=colour, label=label)
        best = result.optimum.with_prefetch_mb if flag else result.optimum.without_prefetch_mb
        ax_ppc.axvline(best, color=colour, linestyle=":", linewidth=1)
    for ax in (ax_ppc, ax_perf):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("L2 size (MiB)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ax_ppc.set_ylabel("decode tokens/s per 1000 USD")
    ax_perf.set_ylabel("decode tokens/s (geometric mean of the mix)")
    ax_ppc.set_title(f"optimum {result.optimum.without_prefetch_mb:g} -> {result.optimum.with_prefetch_mb:g} MiB, "
                     f"{result.optimum.perf_per_cost_gain:.3f}x perf/cost", fontsize=9)  # fmt: skip
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
