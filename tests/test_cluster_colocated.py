"""The cluster twin end to end under the colocated policy: hand-checkable cases, conservation,
determinism, preemption."""

from __future__ import annotations

import random
from typing import Any

import pytest

from llmtwin.cluster.components import Instance
from llmtwin.cluster.records import RunResult
from llmtwin.cluster.run import assemble_result, build_components, run_scenario, step_model
from llmtwin.errors import ConfigurationError
from llmtwin.physics.graph import BatchShape
from llmtwin.scenario.spec import ClusterSpec, EngineConfig, PolicySpec, Scenario, WorkloadSpec
from llmtwin.sim.kernel import Envelope
from llmtwin.sim.local import LocalRunner
from llmtwin.workload.request import RequestSpec

EXACT = EngineConfig(shape_bucket=0.0)
"""No cost buckets: iteration times are the cost model's own."""


def make_scenario(
    policy: str = "colocated",
    params: dict[str, Any] | None = None,
    instances: int = 1,
    engine: EngineConfig = EXACT,
    routing_latency_s: float = 0.0,
    model: str = "llama-2-7b",
    hardware: str = "h100-sxm",
    tp: int = 1,
) -> Scenario:
    return Scenario(
        name="test",
        model=model,
        cluster=ClusterSpec(hardware=hardware, instances=instances, tp=tp),
        workload=WorkloadSpec(),
        policy=PolicySpec(policy, params or {}),
        engine=engine,
        routing_latency_s=routing_latency_s,
    )


def make_requests(
    n: int, rate_rps: float = 20.0, seed: int = 1, prompt: int = 1500, output: int = 200
) -> list[RequestSpec]:
    """``n`` Poisson arrivals with lengths spread around ``prompt`` and ``output``."""
    rng = random.Random(seed)
    t = 0.0
    out = []
    for i in range(n):
        out.append(RequestSpec(i, t, rng.randint(1, 2 * prompt), rng.randint(1, 2 * output)))
        t += rng.expovariate(rate_rps)
    return out


class CheckedInstance(Instance):
    """An instance that verifies its KV accounting (and, unless colocated, that no iteration
    mixed prefills with decodes) after every step."""

    def step(self, now: float, inbox: list[Envelope]) -> None:
        super().step(now, inbox)
        self.engine.check()
        log = self.engine.log
        if "mixed" not in log.roles:
            for decode, prefill in zip(log.seg_decode, log.seg_prefill_seqs, strict=True):
                assert not (decode and prefill), "a prefill joined a decode batch"


def run_checked(s: Scenario, reqs: list[RequestSpec]) -> tuple[RunResult, list[Instance]]:
    """Run with every instance checked after every step; the result and the instances."""
    comps = build_components(s, reqs)
    for i, c in enumerate(comps):
        if isinstance(c, Instance):
            comps[i] = CheckedInstance(c.iid, c.engine, c.agent, c.devices)
    end = LocalRunner(comps).run()
    parts = {c.id: c.export() for c in comps}  # type: ignore[attr-defined]
    insts = [c for c in comps if isinstance(c, Instance)]
    return assemble_result(s, s.policy.name, parts, end, {}), insts


def check_conservation(result: RunResult, requests: list[RequestSpec]) -> None:
    """Every request completes exactly once with every token it asked for; KV stays in capacity."""
    assert [r.rid for r in result.requests] == [q.rid for q in requests]
    for rec, req in zip(result.requests, requests, strict=True):
        assert rec.failed_reason is None, rec.failed_reason
        assert rec.generated_tokens == req.output_tokens == len(rec.token_times_s)
        assert rec.completion_s == rec.token_times_s[-1]
        assert rec.first_token_s is not None
        assert rec.first_token_s > rec.arrival_s
        assert all(b > a for a, b in zip(rec.token_times_s, rec.token_times_s[1:], strict=False))
        assert rec.instances
    assert sum(i.tokens_generated for i in result.instances) == sum(q.output_tokens for q in requests)
    for inst in result.instances:
        assert inst.kv_timeline
        for _, primary, redundant in inst.kv_timeline:
            assert primary >= 0
            assert redundant >= 0
            assert primary + redundant <= inst.kv_capacity_bytes


def test_one_request_alone_ttft_is_prefill_time_plus_routing() -> None:
    """A lone request's first token comes one prefill step (the cost model's) after routing."""
    s = make_scenario(routing_latency_s=0.003)
    reqs = [RequestSpec(0, 0.5, 1000, 4)]
    res = run_scenario(s, requests=reqs)
    step = step_model(s)
    rec = res.requests[0]
    assert rec.ttft_s == pytest.approx(0.003 + step.time(BatchShape.prefill(1, 1000)), rel=1e-12)
    # Then one decode step per token, each reading one more KV token.
    gaps = rec.tbt_s()
    assert gaps == pytest.approx([step.time(BatchShape.decode(1, 1000 + g)) for g in (1, 2, 3)], rel=1e-12)


def test_two_requests_tbt_is_the_batch_of_two_decode_step() -> None:
    """Two requests prefilled together then decode as a batch of two: every gap is that step."""
    s = make_scenario()
    reqs = [RequestSpec(0, 0.0, 700, 6), RequestSpec(1, 0.0, 700, 6)]
    res = run_scenario(s, requests=reqs)
    step = step_model(s)
    a, b = res.requests
    prefill = step.time(BatchShape(prefill_tokens=1400, prefill_seqs=2, prefill_attn_pairs=2 * 700 * 701 / 2))
    assert a.first_token_s == b.first_token_s == pytest.approx(prefill, rel=1e-12)
    assert a.token_times_s == b.token_times_s
    expected = [step.time(BatchShape.decode(2, 700 + g)) for g in range(1, 6)]
    assert a.tbt_s() == pytest.approx(expected, rel=1e-12)
    assert res.instances[0].batch_sizes == [2] * 6


def test_conservation_and_kv_capacity_under_load() -> None:
    """A loaded two-instance run finishes every request with all its tokens and in-capacity KV."""
    s = make_scenario(instances=2, engine=EngineConfig())
    reqs = make_requests(120, rate_rps=25.0)
    check_conservation(run_scenario(s, requests=reqs), reqs)


def test_preemption_recomputes_and_still_conserves() -> None:
    """Too many long requests for the KV cache: some are preempted, all still finish whole."""
    s = make_scenario(engine=EngineConfig(max_batch_tokens=16384))
    reqs = [RequestSpec(i, 0.0, 3000, 1200) for i in range(48)]  # 48 x 4200 tokens > ~119k capacity
    res, _ = run_checked(s, reqs)  # KV accounting checked after every step
    check_conservation(res, reqs)
    assert sum(r.preemptions for r in res.requests) > 0
    assert res.instances[0].preemptions == sum(r.preemptions for r in res.requests)


def test_chunked_prefill_conserves_and_splits_long_prompts() -> None:
    """With chunked prefill a long prompt spans several iterations, and every token still comes out."""
    s = make_scenario(engine=EngineConfig(chunked_prefill=True, max_batch_tokens=512, shape_bucket=0.0))
    reqs = [RequestSpec(0, 0.0, 2000, 3)]
    res = run_scenario(s, requests=reqs)
    check_conservation(res, reqs)
    assert res.instances[0].iterations == 4 + 2  # ceil(2000/512) chunks, then two decode steps
    assert res.instances[0].prefill_tokens == 2000


def test_same_scenario_same_records() -> None:
    """Two runs of one scenario give identical records (token times to the last bit)."""
    s = make_scenario(instances=3, engine=EngineConfig(), params={"routing": "least_kv"})
    reqs = make_requests(80, rate_rps=30.0, seed=5)
    a, b = run_scenario(s, requests=reqs), run_scenario(s, requests=reqs)
    assert a.requests == b.requests
    assert a.instances == b.instances


@pytest.mark.parametrize("routing", ["round_robin", "least_outstanding_tokens", "least_kv"])
def test_every_routing_spreads_requests(routing: str) -> None:
    """Each routing rule uses every instance and conserves requests."""
    s = make_scenario(instances=3, engine=EngineConfig(), params={"routing": routing})
    reqs = make_requests(30, rate_rps=40.0)
    res = run_scenario(s, requests=reqs)
    check_conservation(res, reqs)
    assert {r.instances[0] for r in res.requests} == {0, 1, 2}


def test_round_robin_cycles_through_instances() -> None:
    """round_robin sends request i to instance i mod n."""
    s = make_scenario(instances=3, params={"routing": "round_robin"})
    reqs = make_requests(9)
    res = run_scenario(s, requests=reqs)
    assert [r.instances for r in res.requests] == [[i % 3] for i in range(9)]


def test_a_request_too_long_for_the_kv_cache_fails_with_a_reason() -> None:
    """A request whose KV can never fit is reported failed, not dropped; the others complete."""
    s = make_scenario(model="llama-3-70b", tp=2)
    step = step_model(s)
    too_long = step.kv_capacity_tokens() + 10
    reqs = [RequestSpec(0, 0.0, 100, 5), RequestSpec(1, 0.1, too_long, 5), RequestSpec(2, 0.2, 100, 5)]
    res = run_scenario(s, requests=reqs)
    assert res.requests[1].failed_reason is not None
    assert "KV" in res.requests[1].failed_reason
    assert res.requests[1].generated_tokens == 0
    assert [res.requests[i].generated_tokens for i in (0, 2)] == [5, 5]


def test_unknown_policy_and_parameter_are_errors() -> None:
    """A policy name or parameter nobody defines is a clear TwinError."""
    with pytest.raises(ConfigurationError, match="unknown policy"):
        run_scenario(make_scenario(policy="nope"), requests=make_requests(1))
    with pytest.raises(ConfigurationError, match="no parameter"):
        run_scenario(make_scenario(params={"routnig": "least_kv"}), requests=make_requests(1))
    with pytest.raises(ConfigurationError, match="routing"):
        run_scenario(make_scenario(params={"routing": "fastest"}), requests=make_requests(1))


def test_preserve_asks_the_plan_provider_for_decode_steps() -> None:
    """With engine.preserve the decode steps go through the plan provider; an empty plan changes nothing."""
    asked: list[BatchShape] = []

    def provider(shape: BatchShape) -> dict[int, float]:
        asked.append(shape)
        return {}

    reqs = make_requests(10)
    plain = run_scenario(make_scenario(engine=EngineConfig()), requests=reqs)
    s = make_scenario(engine=EngineConfig(preserve=True))
    comps = build_components(s, reqs, plan_provider=provider)
    end = LocalRunner(comps).run()
    res = assemble_result(s, "colocated", {c.id: c.export() for c in comps}, end, {})  # type: ignore[attr-defined]
    assert asked
    assert all(sh.prefill_tokens == 0 for sh in asked)
    assert res.requests == plain.requests
