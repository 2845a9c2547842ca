"""Grafana's JSON model of the shipped dashboards, and the generator's write and check.

:func:`write_generated` writes ``grafana/dashboards/*.json`` and ``prometheus/rules.yml`` under a
project root; :func:`check_generated` lists what is wrong there, like vLLM's dashboard
generator's ``--check``: a file that differs from what the generator writes, a JSON file in the
dashboards folder it did not write, a query that does not parse as PromQL (after Grafana's
variables are substituted), or one that names a metric the catalogue does not define.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from llmtwin.observe.catalog import lookup
from llmtwin.observe.dashboards import DASHBOARDS
from llmtwin.observe.families import CATALOG
from llmtwin.observe.metrics_doc import with_metrics_section
from llmtwin.observe.panels import Dashboard, Panel
from llmtwin.observe.promql import metric_names, substitute
from llmtwin.observe.recording_rules import rules, rules_yaml

DATASOURCE_UID = "prometheus"
"""The uid of the provisioned Prometheus datasource (grafana/provisioning/datasources/)."""
SCRAPE_INTERVAL = "5s"
"""Prometheus's scrape interval (prometheus/prometheus.yml), the datasource's timeInterval."""
SCHEMA_VERSION = 39
"""Grafana 10.4 / 11.x dashboard schema."""
PANEL_HEIGHT = 8
DASHBOARDS_DIR = Path("grafana/dashboards")
RULES_FILE = Path("prometheus/rules.yml")
DOC_FILE = Path("docs/observability.md")
"""Its metric tables are generated (llmtwin/observe/metrics_doc.py); the rest is written by hand."""
ENGINE_SELECTOR = "twin_instance_role"
"""A family every instance exports under both metric modes: the variables' source."""

_DS = {"type": "prometheus", "uid": DATASOURCE_UID}


def _variable(name: str, query: str, label: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": _DS,
        "definition": query,
        "query": {"query": query, "refId": f"{name}-values"},
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": ".+",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
    }


def _panel(p: Panel, pid: int, x: int, y: int) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": p.unit}
    options: dict[str, Any] = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}}
    if p.kind == "timeseries":
        defaults["custom"] = {
            "fillOpacity": 30 if p.stacked else 10,
            "stacking": {"mode": "normal" if p.stacked else "none"},
        }
        options["tooltip"] = {"mode": "multi", "sort": "desc"}
    elif p.kind == "stat":
        options = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "textMode": "value_and_name",
        }
    if p.value_names:
        defaults["mappings"] = [
            {
                "type": "value",
                "options": {
                    f"{v:g}": {"text": text, "index": i} for i, (v, text) in enumerate(p.value_names)
                },
            }
        ]
    return {
        "id": pid,
        "type": p.kind,
        "title": p.title,
        "description": p.description,
        "datasource": _DS,
        "gridPos": {"h": PANEL_HEIGHT, "w": p.width, "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options,
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "datasource": _DS,
                "expr": q.expr,
                "legendFormat": q.legend or "__auto",
                "range": True,
            }
            for i, q in enumerate(p.queries)
        ],
    }


def dashboard_json(d: Dashboard) -> dict[str, Any]:
    """Grafana's JSON model of ``d``: rows laid out left to right, 24 columns wide."""
    panels: list[dict[str, Any]] = []
    pid, y = 1, 0
    for row in d.rows:
        panels.append({"id": pid, "type": "row", "title": row.title, "collapsed": False, "panels": [],
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}})  # fmt: skip
        pid, y, x = pid + 1, y + 1, 0
        for p in row.panels:
            if x + p.width > 24:
                x, y = 0, y + PANEL_HEIGHT
            panels.append(_panel(p, pid, x, y))
            pid, x = pid + 1, x + p.width
        y += PANEL_HEIGHT
    return {
        "uid": d.uid,
        "title": d.title,
        "description": d.description,
        "tags": list(d.tags),
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "refresh": SCRAPE_INTERVAL,
        "time": {"from": "now-15m", "to": "now"},
        "timezone": "browser",
        "annotations": {"list": []},
        "links": [{"type": "dashboards", "tags": ["llmtwin"], "asDropdown": True, "title": "llmtwin"}],
        "templating": {
            "list": [
                _variable("model_name", f"label_values({ENGINE_SELECTOR}, model_name)", "model"),
                _variable(
                    "engine",
                    f'label_values({ENGINE_SELECTOR}{{model_name=~"$model_name"}}, engine)',
                    "instance",
                ),
            ]
        },
        "panels": panels,
    }


def generated_files() -> dict[Path, str]:
    """Every file the generator writes, relative to the project root, and its text."""
    out = {DASHBOARDS_DIR / d.file_name: json.dumps(dashboard_json(d), indent=2) + "\n" for d in DASHBOARDS}
    out[RULES_FILE] = rules_yaml()
    return out


def write_generated(root: Path) -> list[Path]:
    """Write the generated files (and the metric tables of the docs) under ``root``; the paths written."""
    written = []
    files = generated_files()
    doc = root / DOC_FILE
    if doc.exists():
        files[DOC_FILE] = with_metrics_section(doc.read_text())
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written


def all_queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every query: panels, template variables and recording rules."""
    out = []
    for d in DASHBOARDS:
        for p in d.panels():
            out += [(f"{d.uid} / {p.title}", q.expr) for q in p.queries]
        for v in dashboard_json(d)["templating"]["list"]:
            out.append((f"{d.uid} / variable {v['name']}", _label_values_selector(v["definition"])))
    out += [(f"rule {r.record}", r.expr) for r in rules()]
    return out


def json_queries(doc: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) of every panel query of a Grafana dashboard's JSON (rows' panels too), e.g.
    vLLM's published dashboards in grafana/extra."""
    out = []
    panels = list(doc.get("panels", []))
    while panels:
        p = panels.pop(0)
        panels += p.get("panels", [])
        out += [
            (f"{doc.get('title')} / {p.get('title')}", t["expr"])
            for t in p.get("targets", [])
            if t.get("expr")
        ]
    return out


def _label_values_selector(definition: str) -> str:
    """``label_values(SELECTOR, label)`` -> SELECTOR (the part that is PromQL)."""
    return definition.removeprefix("label_values(").rsplit(",", 1)[0]


def query_problems() -> list[str]:
    """Queries that do not parse, or that name a metric neither the catalogue nor a rule defines."""
    recorded = {r.record for r in rules()}
    out = []
    for where, expr in all_queries():
        try:
            names = metric_names(substitute(expr))
        except ValueError as exc:
            out.append(f"{where}: does not parse: {exc}")
            continue
        out += [
            f"{where}: unknown metric {n}"
            for n in sorted(names)
            if n not in recorded and lookup(n, CATALOG) is None
        ]
    return out


def check_generated(root: Path) -> list[str]:
    """Everything wrong with the generated files under ``root`` (empty: all good)."""
    out = query_problems()
    files = generated_files()
    for rel, text in files.items():
        path = root / rel
        if not path.exists():
            out.append(f"{rel}: missing (run `llmtwin dashboards --write`)")
        elif path.read_text() != text:
            out.append(f"{rel}: differs from the generator's output (run `llmtwin dashboards --write`)")
    doc = root / DOC_FILE
    if doc.exists() and with_metrics_section(doc.read_text()) != doc.read_text():
        out.append(
            f"{DOC_FILE}: its metric tables differ from the catalogue (run `llmtwin dashboards --write`)"
        )
    folder = root / DASHBOARDS_DIR
    if folder.is_dir():
        for extra in sorted(set(folder.glob("*.json")) - {root / rel for rel in files}):
            out.append(
                f"{extra.relative_to(root)}: not written by the generator (remove it or add it to the source)"
            )
    return out
