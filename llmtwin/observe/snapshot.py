"""Every dashboard drawn to PNG from a Prometheus's data: pictures where no Grafana runs.

Range queries over ``[start, end]`` with Grafana's variables replaced (every model and instance,
``$__rate_interval`` = four steps, at least 20 s), one picture per dashboard
(``llmtwin dashboards --prometheus URL --out DIR``, and ``llmtwin up --observe`` at the end).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from llmtwin.observe.dashboards import DASHBOARDS
from llmtwin.observe.promql import GRAFANA_DEFAULTS, substitute
from llmtwin.observe.render import Series, render_dashboard


class RangeQueries(Protocol):
    """What is asked of Prometheus (``llmtwin.runtime.prometheusd.PrometheusApi``)."""

    def query_range(self, expr: str, start: float, end: float, step_s: float) -> list[dict[str, Any]]: ...


def render_all(api: RangeQueries, out: Path, start: float, end: float) -> list[str]:
    """Draw every dashboard to ``out/<uid>.png``; the panels (``dashboard / title``) without data."""
    span = max(end - start, 1.0)
    step = max(1.0, span / 300.0)
    variables = {**GRAFANA_DEFAULTS, "$__rate_interval": f"{max(4 * step, 20.0):g}s"}

    def fetch(expr: str) -> list[Series]:
        result = api.query_range(substitute(expr, variables), start, end, step)
        return [
            Series(dict(r["metric"]), tuple((float(t), float(v)) for t, v in r["values"])) for r in result
        ]

    out.mkdir(parents=True, exist_ok=True)
    empty = []
    for d in DASHBOARDS:
        counts = render_dashboard(d, fetch, out / f"{d.uid}.png", start)
        empty += [f"{d.uid} / {title}" for title, n in counts.items() if n == 0]
    return empty
