"""Dashboards as PNG pictures, for people without a Grafana server.

Each dashboard becomes one picture laid out like Grafana's grid (24 columns, rows of panels),
every panel drawn from the series its queries return over a time range. Where the series come
from is the caller's business (``llmtwin dashboards`` asks a Prometheus, see
:mod:`llmtwin.runtime.prometheusd`); matplotlib is imported only when drawing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmtwin.observe.panels import Dashboard, Panel


@dataclass(frozen=True, slots=True)
class Series:
    """One series a query returned: its labels and (unix time s, value) points."""

    labels: dict[str, str]
    points: tuple[tuple[float, float], ...]


Fetch = Callable[[str], Sequence[Series]]
"""Runs one PromQL query (Grafana variables already substituted) over the picture's range."""


def legend(fmt: str, labels: dict[str, str]) -> str:
    """Grafana's legend format: ``{{engine}} {{role}}`` with the series' labels."""
    if not fmt or fmt == "__auto":
        inner = ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "__name__")
        return labels.get("__name__", "") + (f"{{{inner}}}" if inner else "") or "value"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt).strip() or "value"


def format_value(value: float, unit: str) -> str:
    """A value as Grafana would label it (roughly) for the units the dashboards use."""
    if math.isnan(value):
        return "NaN"
    if unit == "percentunit":
        return f"{value * 100:.1f}%"
    if unit in ("bytes", "Bps"):
        for scale, suffix in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
            if abs(value) >= scale:
                return f"{value / scale:.3g} {suffix}" + ("/s" if unit == "Bps" else "")
        return f"{value:.3g} B" + ("/s" if unit == "Bps" else "")
    if unit == "currencyUSD":
        return f"${value:,.2f}"
    if unit == "s":
        return f"{value * 1000:.3g} ms" if abs(value) < 1 else f"{value:.3g} s"
    if unit == "reqps":
        return f"{value:.3g} req/s"
    return f"{value:.4g}"


def _draw(ax: Any, panel: Panel, results: list[tuple[str, Series]], t0: float) -> None:
    ax.set_title(panel.title, fontsize=9, loc="left")
    ax.tick_params(labelsize=7)
    if not results:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="grey")
        ax.set_xticks([])
        ax.set_yticks([])
        return
    if panel.kind == "stat":
        lines = [f"{name}: {format_value(s.points[-1][1], panel.unit)}" for name, s in results if s.points]
        ax.text(
            0.02,
            0.5,
            "\n".join(lines[:8]),
            va="center",
            transform=ax.transAxes,
            fontsize=9,
            family="monospace",
        )
        ax.set_xticks([])
        ax.set_yticks([])
        return
    for name, s in results:
        xs = [t - t0 for t, _ in s.points]
        ys = [v for _, v in s.points]
        if panel.kind == "state-timeline":
            ax.step(xs, ys, where="post", label=name, linewidth=1.2)
        else:
            ax.plot(xs, ys, label=name, linewidth=1.0)
    if panel.value_names:
        ax.set_yticks([v for v, _ in panel.value_names], [n for _, n in panel.value_names])
    else:
        ax.yaxis.set_major_formatter(lambda v, _pos: format_value(v, panel.unit))
    ax.set_xlabel("wall seconds into the range", fontsize=7)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc="upper left", ncol=2 if len(results) > 4 else 1)


def render_dashboard(d: Dashboard, fetch: Fetch, path: Path, t0: float) -> dict[str, int]:
    """Draw ``d`` to ``path`` (PNG); the number of series each panel's queries returned."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layout: list[list[Panel]] = []
    for row in d.rows:
        line: list[Panel] = []
        for p in row.panels:
            if sum(q.width for q in line) + p.width > 24:
                layout.append(line)
                line = []
            line.append(p)
        layout.append(line)
    fig = plt.figure(figsize=(18, 3.0 * len(layout) + 0.6))
    grid = fig.add_gridspec(len(layout), 24, left=0.045, right=0.995, top=0.9, hspace=0.7, wspace=3.0)
    counts: dict[str, int] = {}
    for r, line in enumerate(layout):
        x = 0
        for p in line:
            ax = fig.add_subplot(grid[r, x : x + p.width])
            results = [(legend(q.legend, s.labels), s) for q in p.queries for s in fetch(q.expr)]
            counts[p.title] = len(results)
            _draw(ax, p, results, t0)
            x += p.width
    fig.suptitle(f"{d.title}: {d.description}", fontsize=11, x=0.01, ha="left")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)
    return counts
