"""AcceLLM: pair roles, redundant copies, hand-overs, eviction, and its invariants."""

from __future__ import annotations

from typing import Any

import pytest
from test_cluster_colocated import check_conservation, make_requests, make_scenario, run_checked

from llmtwin.cluster.cost import IterationCost
from llmtwin.cluster.engine import Engine
from llmtwin.cluster.engine_events import Evicted, Recompute
from llmtwin.cluster.run import cluster_context, run_scenario, step_model
from llmtwin.cluster.seqs import Held, Role
from llmtwin.errors import ConfigurationError
from llmtwin.physics.graph import BatchShape
from llmtwin.scenario.spec import EngineConfig, Scenario
from llmtwin.workload.request import RequestSpec


def accellm(
    params: dict[str, Any] | None = None, engine: EngineConfig | None = None, pairs: int = 1
) -> Scenario:
    return make_scenario("accellm", params, instances=2 * pairs, engine=engine or EngineConfig())


def test_one_request_prefills_on_one_and_decodes_on_the_partner() -> None:
    """TTFT is routing + prefill; the KV streams layer by layer and the partner decodes from then on."""
    s = make_scenario("accellm", instances=2, routing_latency_s=0.001)
    res = run_scenario(s, requests=[RequestSpec(0, 0.0, 1200, 4)])
    step = step_model(s)
    ctx = cluster_context(s, step)
    rec = res.requests[0]
    prefill = step.time(BatchShape.prefill(1, 1200))
    assert rec.ttft_s == pytest.approx(0.001 + prefill, rel=1e-12)
    lands = ctx.link.layerwise_landing(0, 1, ctx.kv_bytes(1200), 0.001, 0.001 + prefill, ctx.layers)
    assert rec.token_times_s[1] == pytest.approx(lands + step.time(BatchShape.decode(1, 1201)), rel=1e-12)
    assert rec.instances == [0, 1]
    # The prompt's KV, then (eager sync) the KV of each of the 3 decoded tokens' inputs.
    assert rec.kv_bytes_moved == ctx.kv_bytes(1200 + 3)


@pytest.mark.parametrize("choice", ["least_loaded", "alternate"])
@pytest.mark.parametrize("sync", ["eager", "on_handover"])
@pytest.mark.parametrize("split", ["kv_tokens", "count"])
def test_invariants_under_load(sync: str, split: str, choice: str) -> None:
    """Two pairs under load: every request completes whole, no prefill mixes into a decode batch,
    KV accounting balances after every step, every pair's prefill instance goes back to decoding,
    and both instances of a pair serve decodes. Which instance prefills depends on the choice:
    ``alternate`` makes both of each pair switch roles by construction; ``least_loaded`` picks by
    pinned requests and last-reported KV use, so it may keep one instance as the pair's prefill
    instance (the cheaper choice: it hands over the fewest decodes, docs/policies.md rule 3)."""
    s = accellm({"kv_sync": sync, "decode_split": split, "prefill_choice": choice}, pairs=2)
    reqs = make_requests(150, rate_rps=30.0)
    res, insts = run_checked(s, reqs)
    check_conservation(res, reqs)
    for inst in res.instances:
        assert set(inst.busy_s) <= {"prefill", "decode"}
        assert inst.busy_s["decode"] > 0
        assert inst.tokens_generated > 0
        assert sum(inst.idle_s_by_role.values()) == pytest.approx(inst.idle_s, abs=1e-9)
    for x, y in zip(res.instances[::2], res.instances[1::2], strict=True):
        switches = (x.role_switches, y.role_switches)
        assert all(switches) if choice == "alternate" else any(switches)
        assert all(n % 2 == 0 for n in switches)  # every prefill spell ended back in decoding
    assert any(len(set(r.instances)) == 2 for r in res.requests)
    assert any(red > 0 for i in res.instances for _, _, red in i.kv_timeline)
    for c in insts:
        assert not c.engine.running
        assert not c.engine.held
        assert not c.engine.replicas


def test_memory_pressure_evicts_copies_and_loses_no_primary() -> None:
    """With too little KV for two copies of everything, copies are evicted and rebuilt, and every
    request still finishes with all its tokens."""
    s = accellm({"redundancy_evict_threshold": 0.1, "rebuild_threshold": 0.3})
    reqs = [RequestSpec(i, i * 0.02, 2500, 700) for i in range(60)]
    res, insts = run_checked(s, reqs)
    check_conservation(res, reqs)
    evicted = [e for c in insts for e in c.engine.events if isinstance(e, Evicted)]
    assert evicted
    preempted = {e.rid for c in insts for e in c.engine.events if isinstance(e, Recompute)}
    # Whatever was preempted was recomputed: every request completed above.
    assert all(res.requests[r].preemptions > 0 for r in preempted)


def test_engine_evicts_redundant_copies_before_preempting() -> None:
    """An engine short of blocks drops redundant copies first and keeps every running sequence."""
    s = accellm()
    step = step_model(s)
    cfg = EngineConfig(shape_bucket=0.0, watermark=0.0)
    e = Engine(IterationCost(step, 0.0), cfg, capacity_blocks=200, role=Role.DECODE, evict_threshold=0.0)
    for rid in range(4):
        assert e.hold(Held(rid, 0.0, 400, 300, 1))  # 25 blocks each
        e.resume(rid)
    for rid in range(10, 14):
        assert e.add_replica(rid, 400)
    assert e.free == 0
    e.advance(1.0)
    assert sorted(e.running) == [0, 1, 2, 3]
    assert not e.log.preempted_rids
    assert len(e.replicas) < 4
    assert any(isinstance(ev, Evicted) for ev in e.events)
    e.check()


def test_parameters_are_checked() -> None:
    """Odd instance counts and unknown or out-of-range parameters are clear errors."""
    with pytest.raises(ConfigurationError, match="even"):
        run_scenario(make_scenario("accellm", instances=3), requests=[])
    with pytest.raises(ConfigurationError, match="no parameter"):
        run_scenario(accellm({"kv_synch": "eager"}), requests=[])
    with pytest.raises(ConfigurationError, match="kv_sync"):
        run_scenario(accellm({"kv_sync": "lazy"}), requests=[])
    with pytest.raises(ConfigurationError, match="redundancy_evict_threshold"):
        run_scenario(accellm({"redundancy_evict_threshold": 1.5}), requests=[])


def test_accellm_is_deterministic() -> None:
    """The same scenario twice gives identical records."""
    s = accellm(pairs=2)
    reqs = make_requests(60, rate_rps=40.0, seed=8)
    assert run_scenario(s, requests=reqs).requests == run_scenario(s, requests=reqs).requests


def test_prefill_linger_keeps_the_prefill_role_a_while() -> None:
    """With prefill_linger_s the prefill instance goes back to decoding that long after its queue emptied."""
    s = accellm({"prefill_linger_s": 0.1})
    res = run_scenario(s, requests=[RequestSpec(0, 0.0, 800, 3)])
    first = res.requests[0].first_token_s
    assert first is not None
    roles = res.instances[0].role_timeline
    assert [r for _, r in roles] == ["decode", "prefill", "decode"]
    assert roles[2][0] == pytest.approx(first + 0.1)
    assert (
        run_scenario(accellm(), requests=[RequestSpec(0, 0.0, 800, 3)]).instances[0].role_timeline[2][0]
        == first
    )


def test_prefill_batch_tokens_caps_prefill_iterations() -> None:
    """Three prompts arriving together share one prefill iteration unless the cap splits them."""
    reqs = [RequestSpec(i, 0.0, 1000, 2) for i in range(3)]
    together = run_scenario(accellm(), requests=reqs)
    assert len({r.first_token_s for r in together.requests}) == 1
    capped = run_scenario(accellm({"prefill_batch_tokens": 1500}), requests=reqs)
    assert len({r.first_token_s for r in capped.requests}) == 3


@pytest.mark.parametrize(("routing", "pair"), [("prefill_aware", 0), ("least_outstanding_tokens", 1)])
def test_prefill_aware_routing_avoids_a_pair_whose_prefill_instance_is_busy(routing: str, pair: int) -> None:
    """Pair 0 decodes a long request, pair 1 prefills a long prompt with few output tokens: a new
    prompt goes to pair 0 (its prefill side idle) under prefill_aware, to pair 1 (fewer
    outstanding tokens) under least_outstanding_tokens."""
    reqs = [RequestSpec(0, 0.0, 100, 3000), RequestSpec(1, 0.1, 2000, 5), RequestSpec(2, 0.101, 100, 100)]
    res = run_scenario(accellm({"pair_routing": routing}, pairs=2), requests=reqs)
    assert res.requests[1].instances[0] // 2 == 1
    assert res.requests[2].instances[0] // 2 == pair
