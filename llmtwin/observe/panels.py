"""The vocabulary of the shipped dashboards: a dashboard is rows of panels, a panel is queries.

Plain data, read by two writers: :mod:`llmtwin.observe.grafana` (Grafana's JSON model, for
``grafana/dashboards/``) and :mod:`llmtwin.observe.render` (PNG pictures from a Prometheus,
for people without Grafana). The dashboards themselves are in :mod:`llmtwin.observe.dashboards`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PANEL_KINDS = ("timeseries", "stat", "state-timeline")


@dataclass(frozen=True, slots=True)
class Query:
    """One PromQL query of a panel, with Grafana variables (``$model_name``, ``$__rate_interval``)."""

    expr: str
    legend: str = ""
    """Grafana legend format (``{{engine}}``)."""


@dataclass(frozen=True, slots=True)
class Panel:
    title: str
    queries: tuple[Query, ...]
    unit: str = "short"
    """Grafana unit id: ``s``, ``bytes``, ``percentunit``, ``reqps``, ``short``, ``currencyUSD``..."""
    kind: str = "timeseries"
    description: str = ""
    width: int = 12
    """Grid columns of 24."""
    stacked: bool = False
    value_names: tuple[tuple[float, str], ...] = ()
    """Value mappings (state timelines): (value, text)."""


@dataclass(frozen=True, slots=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True, slots=True)
class Dashboard:
    uid: str
    title: str
    description: str
    rows: tuple[Row, ...]
    tags: tuple[str, ...] = field(default=("llmtwin",))

    @property
    def file_name(self) -> str:
        return f"{self.uid}.json"

    def panels(self) -> list[Panel]:
        return [p for r in self.rows for p in r.panels]
