"""Latency-versus-load curves of a sweep: one line per policy, p50 solid and p99 dashed."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from matplotlib.axes import Axes

from llmtwin.report.plots import new_figure, plain_log_axis, save
from llmtwin.report.summary import Distribution, Summary

SweepPoints = Sequence[tuple[float, Summary]]
"""(arrival rate req/s, summary) for every run of the sweep."""


def by_policy(points: SweepPoints) -> dict[str, list[tuple[float, Summary]]]:
    """Points grouped per policy (first-seen order), each sorted by rate."""
    out: dict[str, list[tuple[float, Summary]]] = {}
    for rate, s in points:
        out.setdefault(s.policy, []).append((rate, s))
    return {p: sorted(v, key=lambda x: x[0]) for p, v in out.items()}


def _percentile_panel(
    ax: Axes,
    groups: dict[str, list[tuple[float, Summary]]],
    get: Callable[[Summary], Distribution],
    name: str,
    slo_s: float | None = None,
) -> None:
    if slo_s is not None:
        ax.axhline(slo_s, color="0.4", ls=":", lw=1.0, label="SLO")
    for i, (policy, pts) in enumerate(groups.items()):
        color = f"C{i}"
        rates = [r for r, _ in pts]
        for stat, ls in (("p50", "-"), ("p99", "--")):
            ys = [getattr(get(s), stat) for _, s in pts]
            xy = [(r, y) for r, y in zip(rates, ys, strict=True) if y is not None]
            if xy:
                ax.plot(
                    *zip(*xy, strict=True), ls=ls, marker="o", ms=3, color=color, label=f"{policy} {stat}"
                )
    ax.set_xlabel("arrival rate (req/s)")
    ax.set_ylabel(f"{name} (s)")
    ax.set_yscale("log")
    plain_log_axis(ax.yaxis)
    ax.grid(True, alpha=0.3, which="both")


def _scalar_panel(
    ax: Axes,
    groups: dict[str, list[tuple[float, Summary]]],
    get: Callable[[Summary], float | None],
    ylabel: str,
) -> None:
    for i, (policy, pts) in enumerate(groups.items()):
        xy = [(r, y) for r, s in pts if (y := get(s)) is not None]
        if xy:
            ax.plot(*zip(*xy, strict=True), marker="o", ms=3, color=f"C{i}", label=policy)
    ax.set_xlabel("arrival rate (req/s)")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)


def plot_sweep_latency(points: SweepPoints, path: Path, title: str = "") -> Path:
    """TTFT, TBT and E2E p50 (solid) and p99 (dashed) against the arrival rate."""
    groups = by_policy(points)
    slos = {s.slo for _, s in points}
    # One dotted SLO line per panel when every run had the same SLOs (the TBT SLO bounds each
    # request's own p99 gap, so against the pooled percentiles it is a guide, not a threshold).
    slo = next(iter(slos)) if len(slos) == 1 else None
    fig = new_figure(12.0, 3.8)
    axes = fig.subplots(1, 3)
    _percentile_panel(axes[0], groups, lambda s: s.ttft_s, "TTFT", slo.ttft_s if slo else None)
    _percentile_panel(axes[1], groups, lambda s: s.tbt_s, "TBT", slo.tbt_s if slo else None)
    _percentile_panel(axes[2], groups, lambda s: s.e2e_s, "E2E")
    axes[0].legend(fontsize="x-small")
    if title:
        fig.suptitle(title)
    return save(fig, path)


def plot_sweep_throughput(points: SweepPoints, path: Path, title: str = "") -> Path:
    """Throughput, goodput and idle fraction against the arrival rate."""
    groups = by_policy(points)
    fig = new_figure(12.0, 3.8)
    axes = fig.subplots(1, 3)
    _scalar_panel(axes[0], groups, lambda s: s.throughput_tokens_per_s, "throughput (output tok/s)")
    _scalar_panel(axes[1], groups, lambda s: s.goodput_requests_per_s, "goodput (req/s within SLOs)")
    _scalar_panel(
        axes[2],
        groups,
        lambda s: None if s.idle_fraction is None else 100.0 * s.idle_fraction,
        "idle fraction (%)",
    )
    axes[0].legend(fontsize="small")
    if title:
        fig.suptitle(title)
    return save(fig, path)
