"""The disaggregated policy: pools, KV transfer timing, pull when full, conservation."""

from __future__ import annotations

import pytest
from test_cluster_colocated import check_conservation, make_requests, make_scenario, run_checked

from llmtwin.cluster.run import cluster_context, run_scenario, step_model
from llmtwin.errors import ConfigurationError
from llmtwin.physics.graph import BatchShape
from llmtwin.scenario.spec import EngineConfig
from llmtwin.workload.request import RequestSpec


def test_one_request_hand_checked() -> None:
    """TTFT is routing + prefill; the second token waits for the whole KV (after_prefill) plus one step."""
    s = make_scenario("disaggregated", {"kv_transfer": "after_prefill"}, instances=2, routing_latency_s=0.002)
    res = run_scenario(s, requests=[RequestSpec(0, 0.0, 1000, 3)])
    step, ctx = step_model(s), cluster_context(s, step_model(s))
    rec = res.requests[0]
    prefill = step.time(BatchShape.prefill(1, 1000))
    assert rec.ttft_s == pytest.approx(0.002 + prefill, rel=1e-12)
    lands = rec.token_times_s[0] + ctx.link.time(0, 1, ctx.kv_bytes(1000))
    assert rec.token_times_s[1] == pytest.approx(lands + step.time(BatchShape.decode(1, 1001)), rel=1e-12)
    assert rec.instances == [0, 1]
    assert rec.kv_bytes_moved == ctx.kv_bytes(1000)


def test_layerwise_transfer_lands_earlier_than_after_prefill() -> None:
    """Streaming layer by layer overlaps the prefill, so the second token comes sooner."""
    req = [RequestSpec(0, 0.0, 3000, 2)]
    times = {}
    for mode in ("layerwise", "after_prefill"):
        s = make_scenario("disaggregated", {"kv_transfer": mode}, instances=2)
        times[mode] = run_scenario(s, requests=req).requests[0].token_times_s
    assert times["layerwise"][0] == times["after_prefill"][0]
    assert times["layerwise"][1] < times["after_prefill"][1]


def test_pools_keep_their_roles() -> None:
    """Prefill instances never decode, decode instances never prefill; every request uses one of each."""
    s = make_scenario("disaggregated", {"prefill_instances": 2}, instances=5, engine=EngineConfig())
    reqs = make_requests(100, rate_rps=30.0)
    res = run_scenario(s, requests=reqs)
    check_conservation(res, reqs)
    for inst in res.instances:
        assert set(inst.busy_s) == ({"prefill"} if inst.iid < 2 else {"decode"})
    for r in res.requests:
        assert r.instances[0] < 2 <= r.instances[-1]
        assert r.kv_bytes_moved > 0


def test_decode_preemption_goes_back_to_prefill() -> None:
    """A full decode instance preempts; the request is prefilled again and still finishes whole."""
    s = make_scenario("disaggregated", {"prefill_instances": 1}, instances=2, engine=EngineConfig())
    reqs = [RequestSpec(i, i * 0.01, 3000, 1500) for i in range(45)]
    res, _ = run_checked(s, reqs)  # KV accounting checked after every step
    check_conservation(res, reqs)
    assert sum(r.preemptions for r in res.requests) > 0


def test_default_pool_split_and_bad_splits() -> None:
    """Without prefill_instances a third of the instances prefill; impossible splits are errors."""
    s = make_scenario("disaggregated", instances=6)
    res = run_scenario(s, requests=make_requests(12, rate_rps=50.0))
    assert {r.instances[0] for r in res.requests} <= {0, 1}
    with pytest.raises(ConfigurationError, match="no decode instance"):
        run_scenario(make_scenario("disaggregated", {"prefill_instances": 2}, instances=2), requests=[])
    with pytest.raises(ConfigurationError, match="at least 2"):
        run_scenario(make_scenario("disaggregated"), requests=[])


@pytest.mark.parametrize("routing", ["round_robin", "least_outstanding_tokens", "least_kv"])
def test_every_routing_uses_every_instance_of_each_pool(routing: str) -> None:
    """Within each pool, every routing rule spreads requests over all its instances."""
    s = make_scenario("disaggregated", {"prefill_instances": 2, "routing": routing}, instances=5)
    reqs = make_requests(40, rate_rps=40.0)
    res = run_scenario(s, requests=reqs)
    check_conservation(res, reqs)
    assert {r.instances[0] for r in res.requests} == {0, 1}
    assert {r.instances[-1] for r in res.requests} == {2, 3, 4}
