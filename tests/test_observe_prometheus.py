"""``llmtwin up demo --observe --speed 2``: a real run, its real Prometheus, every dashboard query.

One ``llmtwin up`` process (nats-server, every service, the embedded Prometheus) runs the
acceptance command with a long ``--linger``; the tests query its Prometheus while it lingers:
the names as Prometheus stores them, every query of every shipped dashboard and of vLLM's own
published dashboard (grafana/extra), the totals against the run's summary.json, the pictures
and endpoints.json it wrote, and the exposition linted by promtool.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from llmtwin.observe.agreement import summary_mismatches
from llmtwin.observe.grafana import all_queries, json_queries
from llmtwin.observe.promql import GRAFANA_DEFAULTS, substitute
from llmtwin.runtime.prometheusd import PrometheusApi, QueryError
from tests.prometheus_fixtures import require

ROOT = Path(__file__).resolve().parents[1]
VLLM_DASHBOARD = ROOT / "grafana/extra/vllm-0.10.1.1-grafana.json"
LINGER_S = 120

pytestmark = pytest.mark.slow


@dataclass
class Observed:
    out: Path
    api: PrometheusApi
    summary: dict[str, Any]
    endpoints: dict[str, Any]
    log: str
    started: float
    """Wall time the run's services were up (the start of every range query)."""


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observed]:
    require("prometheus")
    out = tmp_path_factory.mktemp("up-observe")
    log_path = out.parent / "up.log"
    cmd = [sys.executable, "-m", "llmtwin.cli.main", "up", "demo", "--observe", "--speed", "2"]
    started = time.time()
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [*cmd, "--linger", str(LINGER_S), "--out", str(out)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    try:
        deadline = time.monotonic() + 180
        while "everything stays up" not in log_path.read_text():
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        endpoints = json.loads((out / "endpoints.json").read_text())
        yield Observed(
            out,
            PrometheusApi(endpoints["prometheus"]),
            json.loads((out / "summary.json").read_text()),
            endpoints,
            log_path.read_text(),
            started,
        )
    finally:
        proc.send_signal(signal.SIGINT)  # ends the linger: a normal exit
        try:
            assert proc.wait(60) == 0, log_path.read_text()[-3000:]
        finally:
            if proc.poll() is None:
                proc.kill()


def _data(api: PrometheusApi, expr: str, start: float) -> bool:
    """Whether ``expr`` has a sample over the run (range query, as a dashboard draws it)."""
    end = time.time()
    return any(r["values"] for r in api.query_range(expr, start, end, max(1.0, (end - start) / 200)))


def test_prometheus_stores_the_vllm_names_with_their_colon(observed: Observed) -> None:
    names = set(observed.api.get("/api/v1/label/__name__/values"))
    assert "vllm:time_to_first_token_seconds_bucket" in names
    assert "vllm:num_requests_running" in names
    assert not any(n.startswith("vllm_") for n in names)
    assert "model_name:time_to_first_token_seconds:p99_rate1m" in names  # the recording rules ran


def test_every_query_of_every_shipped_dashboard_returns_data(observed: Observed) -> None:
    variables = {**GRAFANA_DEFAULTS, "$__rate_interval": "20s"}
    empty = [
        where
        for where, e in all_queries()
        if not _data(observed.api, substitute(e, variables), observed.started)
    ]
    assert empty == []
    assert "panels without data" not in observed.log


def test_vllm_own_dashboard_shows_the_twin(observed: Observed) -> None:
    """vLLM's published dashboard (unmodified, grafana/extra) with its model variable set as
    Grafana sets it (``label_values(model_name)``): every panel query returns data."""
    queries = json_queries(json.loads(VLLM_DASHBOARD.read_text()))
    assert len(queries) > 20
    (model,) = observed.api.get("/api/v1/label/model_name/values")
    variables = {**GRAFANA_DEFAULTS, "$__rate_interval": "20s", "$model_name": model}
    empty = [
        where for where, e in queries if not _data(observed.api, substitute(e, variables), observed.started)
    ]
    assert empty == []


def test_totals_in_prometheus_agree_with_the_summary(observed: Observed) -> None:
    result = observed.api.query('{__name__=~"vllm:.+|twin_.+"}')
    samples = [(r["metric"]["__name__"], r["metric"], float(r["value"][1])) for r in result]
    assert summary_mismatches(samples, observed.summary) == []


def test_a_bad_query_gets_prometheus_message(observed: Observed) -> None:
    with pytest.raises(QueryError, match="parse error"):
        observed.api.query("rate(x[$__rate_interval])")


def test_endpoints_and_pictures(observed: Observed) -> None:
    e = observed.endpoints
    assert e["nats"].startswith("nats://127.0.0.1:")
    assert sorted(e["services"]) == ["balancer", "conductor", "device-1", "generator"]
    assert observed.api.ready()
    pngs = sorted(p.name for p in (observed.out / "dashboards").glob("*.png"))
    assert pngs == sorted(f"llmtwin-{n}.png" for n in ("fleet", "instances", "pairs", "device", "health"))
    assert all((observed.out / "dashboards" / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert (observed.out / "prometheus" / "data").is_dir()


def test_promtool_lints_the_exposition(observed: Observed) -> None:
    """A service's /metrics passes `promtool check metrics`, except where vLLM's own names break
    its conventions (a colon, a histogram called ..._total): every twin family lints clean."""
    promtool = require("promtool")
    problems = []
    for svc in observed.endpoints["services"].values():
        with urllib.request.urlopen(svc["metrics"]) as resp:
            text = resp.read()
        out = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, check=False)
        problems += [line for line in (out.stdout + out.stderr).decode().splitlines() if line]
    assert any(p.startswith("vllm:") for p in problems)  # the lint did run
    assert [p for p in problems if not p.startswith("vllm:")] == [], json.dumps(problems)
