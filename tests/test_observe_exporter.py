"""The fleet metrics pipeline: instance observers, the request tracker, the exporter's families.

A real in-process run with the services' fleet metrics attached (tests/observe_builders.py):
the scraped totals must agree with the run's summary for every policy, however often the
instances are read and in whatever order the token reports reach the tracker. The same pipeline
inside the services over a bus is checked by tests/test_services_golden.py.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from llmtwin.cluster.assemble import UNFINISHED
from llmtwin.cluster.run import run_scenario
from llmtwin.observe.agreement import Totals, summary_mismatches
from llmtwin.observe.catalog import Kind, Owner
from llmtwin.observe.families import CATALOG, owned_by
from llmtwin.observe.observations import (
    ClusterWindow,
    ConductorWindow,
    EngineRequests,
    FinishedRequest,
    InstanceWindow,
)
from llmtwin.observe.run_info import run_info
from llmtwin.report.writers import requests_csv
from llmtwin.scenario.loader import load_scenario
from llmtwin.scenario.overrides import fault_override
from services.exposition import classic_text, samples_from_text
from services.fleet_metrics import FleetMetrics
from tests.observe_builders import ObservedRun, observed_run

POLICIES = ["colocated", "colocated-chunked", "disaggregated", "accellm"]


def _scenario(policy: str, *overrides: str) -> Any:
    return load_scenario("demo", overrides=["workload.requests=60", *overrides], policy=policy)


@pytest.fixture(scope="module", params=POLICIES)
def observed(request: pytest.FixtureRequest) -> ObservedRun:
    return observed_run(_scenario(request.param))


def test_totals_agree_with_the_summary_when_read_every_window(observed: ObservedRun) -> None:
    assert summary_mismatches(observed.samples(), observed.summary) == []


@pytest.mark.parametrize("policy", POLICIES)
def test_totals_agree_however_often_read_and_whatever_the_report_order(policy: str) -> None:
    run = observed_run(_scenario(policy), every=7, reverse=True)
    assert summary_mismatches(run.samples(), run.summary) == []


@pytest.mark.parametrize("policy", POLICIES)
def test_a_run_cut_short_agrees_too(policy: str) -> None:
    """Requests still in flight when the run ends: their tokens and gaps count, as in the summary."""
    run = observed_run(_scenario(policy), every=4, until=1.0)
    assert run.summary["failure_reasons"].get(UNFINISHED, 0) > 0
    assert summary_mismatches(run.samples(), run.summary) == []


@pytest.mark.parametrize("policy", POLICIES)
def test_counters_never_decrease_and_cover_virtual_time(policy: str) -> None:
    """Between two readings no counter series goes down (Prometheus would read a reset and inflate
    increase()), and each instance's busy plus idle time grows exactly as the virtual time its
    metrics cover, so a dashboard's fractions stay within [0, 1]."""
    registry = CollectorRegistry()
    counters = {n for d in CATALOG if d.kind is Kind.COUNTER for n in (d.name, d.twin_name)}
    readings: list[dict[tuple[str, tuple[tuple[str, str], ...]], float]] = []

    def read() -> None:
        samples = samples_from_text(classic_text(registry).decode())
        readings.append({(n, tuple(sorted(lab.items()))): v for n, lab, v in samples if n in counters})

    observed_run(_scenario(policy), every=5, registry=registry, on_reading=read)
    assert len(readings) > 5
    for before, after in itertools.pairwise(readings):
        assert [k for k, v in before.items() if after.get(k, v) < v] == []
        for (name, labels), covered in after.items():
            if name != "twin_instance_virtual_seconds_total":
                continue
            spent = sum(
                v
                for (n, lab), v in after.items()
                if n in ("twin_instance_busy_seconds_total", "twin_instance_idle_seconds_total")
                and dict(lab)["engine"] == dict(labels)["engine"]
            )
            assert spent == pytest.approx(covered, abs=1e-6), (name, labels)


def test_observing_changes_no_result() -> None:
    """The observers only read: requests.csv is the one ``run_scenario`` writes."""
    scenario = _scenario("accellm")
    assert requests_csv(observed_run(scenario, every=3).result, scenario.slo) == requests_csv(
        run_scenario(scenario), scenario.slo
    )


@pytest.mark.parametrize("policy", POLICIES)
def test_under_memory_pressure_the_totals_agree(policy: str) -> None:
    """KV nearly full (tests/test_cluster_streaming.py's PRESSURE): preemptions and recomputed
    prefills (colocated), evicted and rebuilt replicas (AcceLLM)."""
    scenario = _scenario(policy, "model=llama-3-70b", "cluster.tp=2", "workload.requests=150")
    run = observed_run(scenario, every=5)
    assert summary_mismatches(run.samples(), run.summary) == []


@pytest.mark.parametrize("policy", POLICIES)
def test_an_accelerator_failure_agrees_too(policy: str) -> None:
    """An instance down from 0.5 s to 1.5 s of virtual time (issue 10's faults): the requests it
    held are recomputed elsewhere or kept by the AcceLLM partner, and the totals still agree."""
    fault = fault_override(["engine=1@0.5s,recover=1.5s"])
    run = observed_run(_scenario(policy, fault, "workload.requests=80"), every=3)
    assert run.result.faults.affected, "the failure must have hit requests in flight"
    assert summary_mismatches(run.samples(), run.summary) == []


def test_tensor_parallel_and_preserve_figures() -> None:
    """TP2 with PRESERVE: allreduce time and share, bytes prefetched into L2 and step time saved
    (the saving is the plan's: the same step without a plan, minus the step's time)."""
    run = observed_run(
        _scenario("accellm", "cluster.tp=2", "engine.preserve=true", "workload.requests=30"), every=3
    )
    assert summary_mismatches(run.samples(), run.summary) == []
    t = Totals(run.samples())
    busy = t.sum("twin_instance_busy_seconds_total")
    assert 0 < t.sum("twin_instance_allreduce_seconds_total") < busy
    assert 0 < t.sum("twin_preserve_saved_seconds_total") < busy
    assert t.sum("twin_preserve_prefetched_bytes_total") > 0
    assert 0 < t.sum("twin_instance_allreduce_share_ratio") < 4  # four instances, each a share
    l2 = t.sum("twin_instance_l2_capacity_bytes") / 4
    peaks = [v for name, _, v in run.samples() if name == "twin_preserve_l2_prefetch_bytes"]
    assert len(peaks) == 4
    assert all(0 < v <= 1.05 * l2 for v in peaks)


def test_the_check_finds_a_lost_window() -> None:
    """Dropping one reading's device records is caught (the check can fail)."""
    run = observed_run(_scenario("colocated"), every=10, lose=5)
    problems = summary_mismatches(run.samples(), run.summary)
    assert any(p.startswith("vllm:generation_tokens_total") for p in problems)
    registry = CollectorRegistry()
    FleetMetrics(registry, Owner.DEVICE).start_run(run_info("x", load_scenario("demo")))
    problems = summary_mismatches(samples_from_text(classic_text(registry).decode()), run.summary)
    assert any("twin_requests_arrived_total: no samples" in p for p in problems)


def test_twin_mode_renames_the_vllm_layer() -> None:
    run = observed_run(_scenario("accellm"), every=3, mode="twin")
    names = {name for name, _, _ in run.samples()}
    assert not any(n.startswith("vllm:") for n in names)
    assert "twin_time_to_first_token_seconds_bucket" in names
    assert "twin_gpu_cache_usage_perc" not in names  # deprecated aliases are dropped
    assert summary_mismatches(run.samples(), run.summary) == []


def test_every_engine_family_is_exported_for_every_instance(observed: ObservedRun) -> None:
    samples = observed.samples()
    engines = {f"instance-{i.iid}" for i in observed.result.instances}
    for owner in (Owner.DEVICE, Owner.BALANCER):
        for d in owned_by(owner):
            if d.labels[:2] != ("model_name", "engine") or d.name == "twin_instance_pair_info":
                continue
            series = d.series_names()
            assert {labels.get("engine") for name, labels, _ in samples if name in series} == engines, d.name
    assert all("instance" not in labels for _, labels, _ in samples)


def test_queue_and_prefill_times_are_those_of_the_first_iteration() -> None:
    """Every finished request knew when its first prefill iteration started (queue time > 0
    for some under load, prefill time > 0 for all)."""
    run = observed_run(_scenario("disaggregated", "workload.rate_rps=100"), every=2)
    samples = run.samples()
    total = dict.fromkeys(("queue", "prefill"), 0.0)
    for name, _, value in samples:
        for k in total:
            if name == f"vllm:request_{k}_time_seconds_sum":
                total[k] += value
    assert total["queue"] > 0
    assert total["prefill"] > 0
    tracker = run.observer.tracker
    assert tracker is not None
    assert tracker.unscheduled == 0


def test_histograms_use_the_catalogue_buckets_and_colons_survive() -> None:
    registry = CollectorRegistry()
    info = run_info("x", load_scenario("demo"))
    device, balancer = FleetMetrics(registry, Owner.DEVICE), FleetMetrics(registry, Owner.BALANCER)
    device.start_run(info)
    balancer.start_run(info)
    device.observe_instance(
        InstanceWindow("instance-0", 1.0, "decode", 2, 1, 3e9, 1e9, 8e9, 20e9, 80e9, 50e6)
    )
    balancer.observe_requests(
        EngineRequests(
            "instance-0",
            ttft_s=(0.02, 0.02, 3.0),
            token_gaps_s=np.full(10, 0.05),
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
        if d.owner in (Owner.DEVICE, Owner.BALANCER) and d.kind is Kind.HISTOGRAM:
            assert f"# TYPE {d.name} histogram" in text


def test_conductor_pace_and_run_info() -> None:
    registry = CollectorRegistry()
    conductor = FleetMetrics(registry, Owner.CONDUCTOR)
    conductor.start_run(run_info("x", load_scenario("demo")))
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
    device = FleetMetrics(registry, Owner.DEVICE)
    device.start_run(run_info("x", load_scenario("demo")))
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
