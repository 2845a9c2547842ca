"""The generated dashboards and rules: up to date, valid Grafana models, PromQL that parses, known metrics."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmtwin.cli.main import main
from llmtwin.observe import grafana
from llmtwin.observe.dashboards import DASHBOARDS
from llmtwin.observe.panels import Dashboard, Panel, Query, Row
from llmtwin.observe.promql import GRAFANA_DEFAULTS, metric_names, substitute
from tests.prometheus_fixtures import require

ROOT = Path(__file__).resolve().parents[1]


def _models() -> list[dict[str, Any]]:
    return [json.loads((ROOT / "grafana/dashboards" / d.file_name).read_text()) for d in DASHBOARDS]


def test_the_checked_in_files_are_the_generators_output() -> None:
    """Same JSON and rules, no foreign JSON, every query parses and names catalogue metrics."""
    assert grafana.check_generated(ROOT) == []
    assert main(["dashboards", "--check", "--root", str(ROOT)]) == 0


def test_the_check_fails_on_stale_foreign_and_unknown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(ROOT / "grafana", tmp_path / "grafana")
    shutil.copytree(ROOT / "prometheus", tmp_path / "prometheus")
    fleet = tmp_path / "grafana/dashboards/llmtwin-fleet.json"
    fleet.write_text(fleet.read_text().replace("Time to first token", "TTFT"))
    (tmp_path / "grafana/dashboards/mine.json").write_text("{}")
    bad = Dashboard(
        "bad", "bad", "", (Row("r", (Panel("p", (Query("rate(vllm:no_such_metric_total[1m])"),)),)),)
    )
    monkeypatch.setattr(grafana, "DASHBOARDS", (*DASHBOARDS, bad))
    problems = "\n".join(grafana.check_generated(tmp_path))
    assert "llmtwin-fleet.json: differs" in problems
    assert "mine.json: not written by the generator" in problems
    assert "bad / p: unknown metric vllm:no_such_metric_total" in problems
    assert "grafana/dashboards/bad.json: missing" in problems
    assert main(["dashboards", "--check", "--root", str(tmp_path)]) == 1


def test_a_query_that_does_not_parse_is_reported() -> None:
    with pytest.raises(ValueError, match="parenthes"):
        metric_names("sum(rate(x[1m])")
    assert metric_names(substitute("rate(x[$__rate_interval])")) == {"x"}


def test_valid_dashboard_models() -> None:
    models = _models()
    assert len({m["uid"] for m in models}) == len(models) == 5
    for m in models:
        assert m["schemaVersion"] == grafana.SCHEMA_VERSION
        panels = m["panels"]
        ids = [p["id"] for p in panels]
        assert len(ids) == len(set(ids)), m["uid"]
        cells: set[tuple[int, int]] = set()
        for p in panels:
            g = p["gridPos"]
            assert 0 <= g["x"] < g["x"] + g["w"] <= 24, p["title"]
            mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
            assert not mine & cells, f"{m['uid']}: {p['title']} overlaps another panel"
            cells |= mine
            if p["type"] == "row":
                continue
            assert p["type"] in ("timeseries", "stat", "state-timeline")
            assert p["datasource"] == {"type": "prometheus", "uid": grafana.DATASOURCE_UID}
            assert p["targets"], p["title"]
            for t in p["targets"]:
                assert t["refId"]
                assert t["expr"]
                assert t["datasource"]["uid"] == grafana.DATASOURCE_UID
        assert [v["name"] for v in m["templating"]["list"]] == ["model_name", "engine"]


def test_extra_dashboards_find_the_provisioned_prometheus() -> None:
    """Every dashboard in grafana/extra (vLLM's, unmodified) names its datasource either by the
    provisioned uid or through a datasource variable of type prometheus, which Grafana sets to
    the stack's only Prometheus: no panel points at a datasource that does not exist. Its
    queries parse once Grafana's variables are substituted."""
    extra = sorted((ROOT / "grafana/extra").glob("*.json"))
    assert extra
    for path in extra:
        doc = json.loads(path.read_text())
        ds_vars = {
            v["name"]
            for v in doc.get("templating", {}).get("list", [])
            if v.get("type") == "datasource" and v.get("query") == "prometheus"
        }
        allowed = {grafana.DATASOURCE_UID, *(f"${{{n}}}" for n in ds_vars), *(f"${n}" for n in ds_vars)}
        panels = list(doc["panels"])
        while panels:
            p = panels.pop()
            panels += p.get("panels", [])
            for ref in [p.get("datasource"), *(t.get("datasource") for t in p.get("targets", []))]:
                if isinstance(ref, dict) and ref.get("type") == "prometheus":
                    assert ref["uid"] in allowed, f"{path.name}: {p.get('title')}: {ref}"
        queries = grafana.json_queries(doc)
        variables = {**GRAFANA_DEFAULTS, "$model_name": "m", "$__rate_interval": "20s"}
        for where, expr in queries:
            assert metric_names(substitute(expr, variables)), where  # raises if it does not parse
        assert queries, path.name


def test_provisioning_matches_the_dashboards_and_prometheus() -> None:
    ds = yaml.safe_load((ROOT / "grafana/provisioning/datasources/prometheus.yaml").read_text())
    (source,) = ds["datasources"]
    assert source["uid"] == grafana.DATASOURCE_UID
    prom = yaml.safe_load((ROOT / "prometheus/prometheus.yml").read_text())
    assert source["jsonData"]["timeInterval"] == prom["global"]["scrape_interval"] == grafana.SCRAPE_INTERVAL
    assert source["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((ROOT / "grafana/provisioning/dashboards/llmtwin.yaml").read_text())[
        "providers"
    ]
    assert {p["type"] for p in providers} == {"file"}


def test_every_query_parses_with_prometheus_own_parser(tmp_path: Path) -> None:
    """promtool (Prometheus 2.42's parser) accepts every query, written as recording rules."""
    promtool = require("promtool")
    rules = [
        {"record": f"llmtwin:check:{i}", "expr": substitute(expr)}
        for i, (_, expr) in enumerate(grafana.all_queries())
    ]
    path = tmp_path / "queries.yml"
    path.write_text(json.dumps({"groups": [{"name": "queries", "rules": rules}]}))
    out = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
