"""A real Prometheus scraping a fleet exporter: stored names, every dashboard query, PNGs, totals.

The exporter serves the records of a real in-process AcceLLM run (tests/observe_builders.py),
fed window by window while Prometheus scrapes it every second, with the project's recording
rules loaded. Phase 2 runs the same checks on a real ``llmtwin up`` run.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from llmtwin.cli.main import main
from llmtwin.observe.agreement import summary_mismatches
from llmtwin.observe.grafana import all_queries
from llmtwin.observe.promql import substitute
from llmtwin.runtime.prometheusd import EmbeddedPrometheus, QueryError
from llmtwin.scenario.loader import load_scenario
from services.metrics import BusMetrics, ConductorMetrics, HostMetrics, PlannerMetrics
from tests.observe_builders import observed_run
from tests.prometheus_fixtures import require, serve_registry

ROOT = Path(__file__).resolve().parents[1]
WINDOWS = 8

pytestmark = pytest.mark.slow


@dataclass
class Observed:
    prom: EmbeddedPrometheus
    summary: dict[str, Any]
    fed: threading.Event


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observed]:
    require("prometheus")
    scenario = load_scenario("demo", overrides=["workload.requests=80"], policy="accellm")
    registry = CollectorRegistry()
    bus, cond, host = BusMetrics(registry), ConductorMetrics(registry), HostMetrics(registry)
    PlannerMetrics(registry)
    bus.up.set(1)
    fed = threading.Event()
    summary: dict[str, Any] = {}

    def tick() -> None:  # some transport figures too, so the health dashboard has data
        cond.windows.inc()
        cond.window_duration.observe(0.002)
        bus.messages_in.inc(10)
        bus.reject("stale")
        host.steps.inc(3)
        time.sleep(0.25)

    with serve_registry(registry) as target:
        prom = EmbeddedPrometheus(
            tmp_path_factory.mktemp("prometheus"),
            {"test-exporter": target},
            scrape_interval_s=1.0,
            rule_files=[ROOT / "prometheus/rules.yml"],
        )
        with prom:

            def feed() -> None:  # the run, read while Prometheus scrapes, so rates are non-zero
                prom.wait_for_samples()
                run = observed_run(scenario, every=400, registry=registry, on_reading=tick)
                summary.update(run.summary)
                time.sleep(2.5)  # two more scrapes and rule evaluations of the final values
                fed.set()

            feeder = threading.Thread(target=feed, daemon=True)
            feeder.start()
            yield Observed(prom, summary, fed)
            feeder.join(30)


def _wait(observed: Observed) -> None:
    assert observed.fed.wait(60), "the feeder did not finish"


def test_prometheus_stores_the_vllm_names_with_their_colon(observed: Observed) -> None:
    _wait(observed)
    names = set(observed.prom.api.get("/api/v1/label/__name__/values"))
    assert "vllm:time_to_first_token_seconds_bucket" in names
    assert "vllm:num_requests_running" in names
    assert not any(n.startswith("vllm_") for n in names)
    assert "model_name:time_to_first_token_seconds:p99_rate1m" in names  # the recording rules ran


def test_every_dashboard_query_returns_data(observed: Observed) -> None:
    _wait(observed)
    empty = [where for where, expr in all_queries() if not observed.prom.api.query(substitute(expr))]
    assert empty == []


def test_totals_in_prometheus_agree_with_the_summary(observed: Observed) -> None:
    _wait(observed)
    result = observed.prom.api.query('{__name__=~"vllm:.+|twin_.+"}')
    samples = [(r["metric"]["__name__"], r["metric"], float(r["value"][1])) for r in result]
    assert summary_mismatches(samples, observed.summary) == []


def test_a_bad_query_gets_prometheus_message(observed: Observed) -> None:
    with pytest.raises(QueryError, match="parse error"):
        observed.prom.api.query("rate(x[$__rate_interval])")


def test_dashboards_render_to_png(observed: Observed, tmp_path: Path) -> None:
    _wait(observed)
    rc = main(
        [
            "dashboards",
            "--prometheus",
            observed.prom.url,
            "--out",
            str(tmp_path),
            "--last",
            "2m",
            "--require-data",
        ]
    )
    assert rc == 0
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert pngs == sorted(f"llmtwin-{n}.png" for n in ("fleet", "instances", "pairs", "device", "health"))
    assert all((tmp_path / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)


def test_promtool_lints_the_exposition(observed: Observed) -> None:
    """The exporter's text passes `promtool check metrics`, except where vLLM's own names break its
    conventions (a colon, a histogram called ..._total): every twin family lints clean."""
    promtool = require("promtool")
    target = observed.prom.targets["test-exporter"]
    with urllib.request.urlopen(f"http://{target}/metrics") as resp:
        text = resp.read()
    out = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, check=False)
    problems = [line for line in out.stdout.decode().splitlines() + out.stderr.decode().splitlines() if line]
    assert any(p.startswith("vllm:") for p in problems)  # the lint did run
    assert [p for p in problems if not p.startswith("vllm:")] == [], json.dumps(problems)
