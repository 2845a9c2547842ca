"""PNG plots of one run (or several overlaid): latency CDFs, KV memory, roles, batch sizes.

Figures are built on matplotlib's object API with an explicit Agg canvas: no pyplot, no global
figure state, never ``show()``. Long series are reduced before drawing (CDFs to at most
``MAX_POINTS`` quantiles; KV and role timelines come already reduced to ``timebins.BINS`` time
bins per instance), so a plot costs the same for a thousand requests as for a million.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from llmtwin.cluster.records import InstanceRecord
from llmtwin.report.plot_data import Cdf, LatencyCdfs, RunPlots

FloatArray = npt.NDArray[np.float64]

MAX_INSTANCE_PANELS = 16
"""Instances shown in per-instance KV plots (the first ones by id); the role strip shows all."""

ROLE_COLORS = {"prefill": "tab:blue", "decode": "tab:orange", "mixed": "tab:green", "idle": "0.85"}
"""Fixed colours so every plot of every run reads the same; unknown roles cycle the rest."""

_EXTRA_COLORS = ("tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")

DPI = 100


def new_figure(width_in: float, height_in: float) -> Figure:
    """A figure bound to the Agg canvas (PNG only, no display)."""
    fig = Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=DPI, metadata={"Software": None})
    return path


def plain_log_axis(axis: Axis) -> None:
    """Log ticks labelled as plain numbers (0.02, not 2 x 10^-2), denser on a short range.

    Call after plotting: the tick density follows the data range then in view.
    """
    lo, hi = axis.get_view_interval()
    decades = math.log10(hi / lo) if lo > 0 and hi > lo else 1.0
    subs = (1.0,) if decades > 3 else (1.0, 2.0, 5.0) if decades > 1.2 else (1.0, 2.0, 3.0, 5.0, 7.0)
    axis.set_major_locator(LogLocator(base=10.0, subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _log_x_if_wide(ax: Axes, samples: Sequence[FloatArray]) -> None:
    """Log x when the positive values (a CDF's points include its minimum and maximum) span more
    than a factor 10."""
    pos = [s[s > 0] for s in samples if s.size]
    pos = [p for p in pos if p.size]
    if pos and max(p.max() for p in pos) > 10 * min(p.min() for p in pos):
        ax.set_xscale("log")
        plain_log_axis(ax.xaxis)


def plot_latency_cdfs(series: Sequence[tuple[str, LatencyCdfs]], path: Path, title: str = "") -> Path:
    """TTFT, TBT and E2E CDFs side by side, one curve per labelled run."""
    fig = new_figure(12.0, 3.6)
    axes = fig.subplots(1, 3)
    panels = (("TTFT", "ttft"), ("TBT (all gaps)", "tbt"), ("E2E (job completion)", "e2e"))
    for ax, (name, attr) in zip(axes, panels, strict=True):
        cdfs: list[Cdf] = [getattr(s, attr) for _, s in series]
        for (label, _), (x, y) in zip(series, cdfs, strict=True):
            ax.step(x, y, where="post", label=label)
        _log_x_if_wide(ax, [x for x, _ in cdfs])
        if ax.get_xscale() == "linear":
            ax.ticklabel_format(axis="x", useOffset=False)
        ax.set_xlabel(f"{name} (s)")
        ax.set_ylabel("fraction of samples")
        ax.set_ylim(0.0, 1.0)
        ax.grid(True, alpha=0.3)
    if len(series) > 1:
        axes[0].legend(loc="lower right", fontsize="small")
    if title:
        fig.suptitle(title)
    return save(fig, path)


def _kv_panel(ax: Axes, inst: InstanceRecord, end_s: float) -> None:
    gib = float(2**30)
    if inst.kv_envelope:
        env = np.asarray(inst.kv_envelope, dtype=np.float64)
        t = np.append(env[:, 0], max(end_s, float(env[-1, 0])))
        primary, total = np.append(env[:, 1], env[-1, 1]) / gib, np.append(env[:, 2], env[-1, 2]) / gib
        ax.fill_between(t, 0.0, primary, step="post", color="tab:blue", alpha=0.7, lw=0, label="primary")
        ax.fill_between(t, primary, total, step="post", color="tab:red", alpha=0.5, lw=0, label="redundant")
    if inst.kv_capacity_bytes > 0:
        ax.axhline(inst.kv_capacity_bytes / gib, color="k", ls="--", lw=0.8, label="capacity")
    ax.set_ylabel(f"inst {inst.iid}\nGiB/device", fontsize="small")
    ax.set_ylim(bottom=0.0)
    ax.grid(True, alpha=0.3)


def plot_kv_timeline(result: RunPlots, path: Path) -> Path:
    """KV-cache bytes per device over time, primary and redundant stacked, one panel per instance."""
    shown = sorted(result.instances, key=lambda i: i.iid)[:MAX_INSTANCE_PANELS]
    fig = new_figure(10.0, 0.6 + 1.4 * max(1, len(shown)))
    axes = fig.subplots(max(1, len(shown)), 1, sharex=True, squeeze=False)[:, 0]
    for ax, inst in zip(axes, shown, strict=False):
        _kv_panel(ax, inst, result.end_s)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside upper right", fontsize="small", ncols=3)
    axes[-1].set_xlabel("virtual time (s)")
    more = len(result.instances) - len(shown)
    fig.suptitle(
        f"KV cache per device ({result.policy})" + (f", first {len(shown)} instances" if more else "")
    )
    return save(fig, path)


def role_colors(roles: Sequence[str]) -> dict[str, str]:
    extra = iter(_EXTRA_COLORS * (1 + len(roles) // len(_EXTRA_COLORS)))
    return {r: ROLE_COLORS.get(r) or next(extra) for r in roles}


def plot_role_timeline(result: RunPlots, path: Path) -> Path:
    """A Gantt-like strip per instance: which role it held when."""
    insts = sorted(result.instances, key=lambda i: i.iid)
    segs = {i.iid: i.role_stretches for i in insts}
    roles = sorted({role for s in segs.values() for _, _, role in s})
    colors = role_colors(roles)
    fig = new_figure(10.0, 1.0 + 0.35 * max(1, len(insts)))
    ax = fig.subplots()
    for row, inst in enumerate(insts):
        for role in roles:
            bars = [(t, d) for t, d, r in segs[inst.iid] if r == role]
            if bars:
                ax.broken_barh(bars, (row - 0.4, 0.8), facecolors=colors[role], linewidth=0)
    ax.set_yticks(range(len(insts)), [f"inst {i.iid}" for i in insts], fontsize="small")
    ax.set_ylim(-0.6, len(insts) - 0.4)
    ax.invert_yaxis()
    ax.set_xlabel("virtual time (s)")
    handles = [Patch(color=colors[r], label=r) for r in roles]
    if handles:
        fig.legend(handles=handles, loc="outside upper right", fontsize="small", ncols=len(roles))
    fig.suptitle(f"Instance roles ({result.policy})")
    return save(fig, path)


def plot_batch_histogram(result: RunPlots, path: Path) -> Path:
    """Histogram of iteration batch sizes, all instances pooled."""
    width = max((len(i.batch_counts) for i in result.instances), default=0)
    counts = np.zeros(width, dtype=np.int64)
    for inst in result.instances:
        counts[: len(inst.batch_counts)] += inst.batch_counts
    fig = new_figure(6.0, 3.6)
    ax = fig.subplots()
    used = np.flatnonzero(counts)
    if used.size:
        top = int(used[-1])
        # One bin per size while that is readable, else 64 equal bins.
        bins = [k - 0.5 for k in range(top + 2)] if top <= 64 else [top * k / 64 for k in range(65)]
        ax.hist(used, bins=bins, weights=counts[used], color="tab:blue")
    ax.set_xlabel("sequences per iteration")
    ax.set_ylabel("iterations")
    ax.set_title(f"Batch sizes ({result.policy})")
    ax.grid(True, alpha=0.3)
    return save(fig, path)


def plot_run(result: RunPlots, out_dir: Path) -> list[Path]:
    """Every per-run plot into ``out_dir``; returns the files written."""
    title = f"{result.scenario} ({result.policy})"
    return [
        plot_latency_cdfs([(result.policy, result.latency)], out_dir / "latency_cdf.png", title),
        plot_kv_timeline(result, out_dir / "kv_timeline.png"),
        plot_role_timeline(result, out_dir / "role_timeline.png"),
        plot_batch_histogram(result, out_dir / "batch_sizes.png"),
    ]
