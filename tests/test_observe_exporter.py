"""The fleet exporter (services/fleet_metrics.py): catalogue-built families, classic text, totals.

The observation records of a real in-process run, cut into windows after the fact
(tests/observe_builders.py), go through the exporter; its scraped totals must agree with the
run's summary for every policy and window cut. The wiring into the live services (phase 2) is
tested on real runs separately.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from llmtwin.cluster.run import run_scenario
from llmtwin.observe.agreement import summary_mismatches
from llmtwin.observe.catalog import Kind, Owner
from llmtwin.observe.families import CATALOG, owned_by
from llmtwin.observe.observations import ClusterWindow, ConductorWindow, FinishedRequest, InstanceWindow
from llmtwin.report.summary import run_span, summarize
from llmtwin.scenario.loader import load_scenario
from services.exposition import classic_text, samples_from_text
from services.fleet_metrics import FleetMetrics
from tests.observe_builders import cluster_windows, instance_windows, run_info


def _run(policy: str) -> tuple[Any, Any, dict[str, Any]]:
    scenario = load_scenario("demo", overrides=["workload.requests=60"], policy=policy)
    result = run_scenario(scenario)
    return scenario, result, summarize(result, scenario.slo).to_dict()


@pytest.fixture(scope="module", params=["colocated", "disaggregated", "accellm"])
def run(request: pytest.FixtureRequest) -> tuple[Any, Any, dict[str, Any]]:
    return _run(request.param)


def _export(scenario: Any, result: Any, windows: int, mode: str = "vllm+twin") -> str:
    start, end = run_span(result)
    edges = [float(x) for x in np.linspace(start, end, windows + 1)[1:]]
    registry = CollectorRegistry()
    device = FleetMetrics(registry, Owner.DEVICE, mode)
    balancer = FleetMetrics(registry, Owner.BALANCER, mode)
    info = run_info(scenario, result)
    device.start_run(info)
    balancer.start_run(info)
    for row, cluster in zip(
        instance_windows(result, edges), cluster_windows(scenario, result, edges), strict=True
    ):
        for w in row:
            device.observe_instance(w)
        balancer.observe_cluster(cluster)
    return classic_text(registry).decode()


@pytest.mark.parametrize("windows", [1, 7])
def test_totals_agree_with_the_summary(run: tuple[Any, Any, dict[str, Any]], windows: int) -> None:
    scenario, result, summary = run
    text = _export(scenario, result, windows)
    assert summary_mismatches(samples_from_text(text), summary) == []


def test_the_check_finds_a_lost_window(run: tuple[Any, Any, dict[str, Any]]) -> None:
    """Dropping one window's records is caught (the check can fail)."""
    scenario, result, summary = run
    start, end = run_span(result)
    edges = [start + (end - start) * k / 4 for k in (1, 2, 3, 4)]
    registry = CollectorRegistry()
    device = FleetMetrics(registry, Owner.DEVICE)
    device.start_run(run_info(scenario, result))
    for row in instance_windows(result, edges)[1:]:
        for w in row:
            device.observe_instance(w)
    problems = summary_mismatches(samples_from_text(classic_text(registry).decode()), summary)
    assert any(p.startswith("vllm:generation_tokens_total") for p in problems)
    assert any("twin_requests_arrived_total: no samples" in p for p in problems)


def test_twin_mode_renames_the_vllm_layer(run: tuple[Any, Any, dict[str, Any]]) -> None:
    scenario, result, summary = run
    text = _export(scenario, result, 3, mode="twin")
    names = {name for name, _, _ in samples_from_text(text)}
    assert not any(n.startswith("vllm:") for n in names)
    assert "twin_time_to_first_token_seconds_bucket" in names
    assert "twin_gpu_cache_usage_perc" not in names  # deprecated aliases are dropped
    assert summary_mismatches(samples_from_text(text), summary) == []


def test_every_device_family_is_exported_for_every_instance() -> None:
    scenario, result, _ = _run("accellm")
    text = _export(scenario, result, 2)
    samples = samples_from_text(text)
    for d in owned_by(Owner.DEVICE):
        series = d.series_names()
        engines = {labels.get("engine") for name, labels, _ in samples if name in series}
        assert engines == {f"instance-{i.iid}" for i in result.instances}, d.name
        assert all("instance" not in labels for _, labels, _ in samples)


def test_histograms_use_the_catalogue_buckets_and_colons_survive() -> None:
    registry = CollectorRegistry()
    device = FleetMetrics(registry, Owner.DEVICE)
    scenario, result, _ = _run("colocated")
    device.start_run(run_info(scenario, result))
    device.observe_instance(
        InstanceWindow(
            "instance-0",
            1.0,
            "decode",
            2,
            1,
            3e9,
            1e9,
            8e9,
            20e9,
            80e9,
            50e6,
            ttft_s=(0.02, 0.02, 3.0),
            token_gaps_s=((0.05, 10),),
            finished=(FinishedRequest(7, 0.0, 0.5, 0.52, 1.02, 100, 11),),
        )
    )
    text = classic_text(registry).decode()
    assert (
        'vllm:time_to_first_token_seconds_bucket{engine="instance-0",le="0.02",model_name="llama-2-7b"} 2.0'
        in text
    )
    assert (
        'vllm:time_to_first_token_seconds_bucket{engine="instance-0",le="2.5",model_name="llama-2-7b"} 2.0'
        in text
    )
    assert 'vllm:inter_token_latency_seconds_count{engine="instance-0",model_name="llama-2-7b"} 10.0' in text
    assert 'vllm:kv_cache_usage_perc{engine="instance-0",model_name="llama-2-7b"} 0.5' in text
    assert (
        'vllm:request_time_per_output_token_seconds_sum{engine="instance-0",model_name="llama-2-7b"} 0.05'
        in text
    )
    assert 'vllm:request_queue_time_seconds_sum{engine="instance-0",model_name="llama-2-7b"} 0.5' in text
    for d in CATALOG:
        if d.owner is Owner.DEVICE and d.kind is Kind.HISTOGRAM:
            assert f"# TYPE {d.name} histogram" in text


def test_conductor_pace_and_run_info() -> None:
    registry = CollectorRegistry()
    conductor = FleetMetrics(registry, Owner.CONDUCTOR)
    scenario, result, _ = _run("colocated")
    conductor.start_run(run_info(scenario, result))
    conductor.observe_conductor(ConductorWindow(at_s=3.0, pace=math.inf, speed=12.5))
    samples = {
        (n, tuple(sorted(labels.items()))): v
        for n, labels, v in samples_from_text(classic_text(registry).decode())
    }
    assert samples[("twin_conductor_pace_ratio", ())] == 0.0
    assert samples[("twin_conductor_speed_ratio", ())] == 12.5
    info = [v for (n, _), v in samples.items() if n == "twin_run_info"]
    assert info == [1.0]
    conductor.end_run()
    assert "twin_run_info{" in classic_text(registry).decode()
    assert [v for n, _, v in samples_from_text(classic_text(registry).decode()) if n == "twin_run_info"] == [
        0.0
    ]


def test_observing_before_a_run_is_an_error() -> None:
    balancer = FleetMetrics(CollectorRegistry(), Owner.BALANCER)
    with pytest.raises(RuntimeError, match="start_run"):
        balancer.observe_cluster(ClusterWindow(at_s=1.0, arrived=1))


async def test_the_endpoint_serves_classic_text_to_an_openmetrics_scraper() -> None:
    """Asked for OpenMetrics (as Prometheus 2.x asks), it answers classic text: colons survive."""
    from aiohttp import ClientSession, web

    from services.exposition import CLASSIC_CONTENT_TYPE, metrics_handler

    registry = CollectorRegistry()
    scenario, result, _ = _run("colocated")
    device = FleetMetrics(registry, Owner.DEVICE)
    device.start_run(run_info(scenario, result))
    device.observe_instance(InstanceWindow("instance-0", 1.0, "idle", 0, 0, 0.0, 0.0, 8e9, 20e9, 80e9, 50e6))
    app = web.Application()
    app.router.add_get("/metrics", metrics_handler(registry))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
        async with (
            ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/metrics", headers={"Accept": accept}) as resp,
        ):
            assert resp.headers["Content-Type"] == CLASSIC_CONTENT_TYPE
            text = await resp.text()
    finally:
        await runner.cleanup()
    assert 'vllm:num_requests_running{engine="instance-0",model_name="llama-2-7b"} 0.0' in text
