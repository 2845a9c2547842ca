"""AcceLLM with both instances of a pair allowed to prefill (max_prefill_per_pair = 2)."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import pytest
from test_cluster_colocated import check_conservation, make_requests, make_scenario, run_checked

from llmtwin.cluster.records import InstanceRecord, RunResult
from llmtwin.cluster.run import run_scenario
from llmtwin.errors import ConfigurationError
from llmtwin.scenario.spec import EngineConfig, Scenario
from llmtwin.workload.request import RequestSpec


def dual(params: dict[str, Any] | None = None, pairs: int = 1) -> Scenario:
    """A pair (or several) whose instances may both prefill."""
    return make_scenario(
        "accellm", {"max_prefill_per_pair": 2, **(params or {})}, instances=2 * pairs, engine=EngineConfig()
    )


def prefill_spans(inst: InstanceRecord, end_s: float) -> list[tuple[float, float]]:
    """The intervals an instance spent in the prefill role, seconds."""
    tl = inst.role_timeline
    return [
        (t, tl[i + 1][0] if i + 1 < len(tl) else end_s) for i, (t, role) in enumerate(tl) if role == "prefill"
    ]


def both_prefill_s(res: RunResult, pair: int = 0) -> float:
    """Seconds during which both instances of ``pair`` held the prefill role."""
    end = max(r.completion_s or 0.0 for r in res.requests)
    a = prefill_spans(res.instances[2 * pair], end)
    b = prefill_spans(res.instances[2 * pair + 1], end)
    return sum(max(0.0, min(x1, y1) - max(x0, y0)) for x0, x1 in a for y0, y1 in b)


def burst(n: int, prompt: int = 3000, output: int = 20, at: float = 0.0) -> list[RequestSpec]:
    return [RequestSpec(i, at + i * 1e-4, prompt, output) for i in range(n)]


def test_both_prefill_under_a_burst_of_prompts() -> None:
    """A burst far above the trigger puts both instances in the prefill role at once, and cuts TTFT."""
    reqs = burst(12)
    one = run_scenario(make_scenario("accellm", instances=2, engine=EngineConfig()), requests=reqs)
    two = run_scenario(dual(), requests=reqs)
    assert both_prefill_s(one) == 0.0
    assert both_prefill_s(two) > 0.0
    assert {i for r in two.requests for i in r.instances[:1]} == {0, 1}
    mean = [sum(r.ttft_s or 0.0 for r in res.requests) / len(reqs) for res in (one, two)]
    assert mean[1] < 0.8 * mean[0]


def test_below_the_trigger_only_one_instance_prefills() -> None:
    """Prompts that never queue a trigger's worth of tokens leave the partner decoding."""
    reqs = burst(12)
    res = run_scenario(dual({"second_prefill_queue_tokens": 12 * 3000 + 1}), requests=reqs)
    assert both_prefill_s(res) == 0.0
    assert all(r.instances[0] == res.requests[0].instances[0] for r in res.requests)
    spaced = [RequestSpec(i, i * 0.5, 3000, 20) for i in range(10)]
    assert both_prefill_s(run_scenario(dual(), requests=spaced)) == 0.0


def test_the_pairs_decodes_pause_while_both_prefill() -> None:
    """A long request decoding when a burst arrives produces no token while both instances prefill."""
    reqs = [RequestSpec(0, 0.0, 500, 400), *[RequestSpec(i + 1, 0.3 + i * 1e-4, 3000, 5) for i in range(12)]]
    res = run_scenario(dual(), requests=reqs)
    end = max(r.completion_s or 0.0 for r in res.requests)
    a, b = prefill_spans(res.instances[0], end), prefill_spans(res.instances[1], end)
    both = [(max(x0, y0), min(x1, y1)) for x0, x1 in a for y0, y1 in b if min(x1, y1) > max(x0, y0)]
    assert both
    times = res.requests[0].token_times_s
    for lo, hi in both:
        # A token may end an iteration that started before the switch; none is made after that.
        inside = [t for t in times if lo < t < hi]
        assert len(inside) <= 1
    assert max(y - x for x, y in pairwise(times)) > 0.2


@pytest.mark.parametrize("sync", ["eager", "on_handover"])
def test_invariants_under_prefill_heavy_load(sync: str) -> None:
    """Two pairs under long prompts: every request completes whole, never a mixed batch, KV
    accounting (a request decodes only where its KV is) checked after every step."""
    s = dual({"kv_sync": sync}, pairs=2)
    reqs = make_requests(160, rate_rps=60.0, prompt=3000, output=60, seed=3)
    res, insts = run_checked(s, reqs)
    check_conservation(res, reqs)
    assert both_prefill_s(res, 0) > 0.0 or both_prefill_s(res, 1) > 0.0
    for inst in res.instances:
        assert set(inst.busy_s) <= {"prefill", "decode"}
    assert any(red > 0 for i in res.instances for _, _, red in i.kv_timeline)
    for c in insts:
        assert not c.engine.running
        assert not c.engine.held
        assert not c.engine.replicas


def test_memory_pressure_with_both_prefilling() -> None:
    """Too little KV for two copies of everything, and both prefill: still no request is lost."""
    s = dual(
        {"redundancy_evict_threshold": 0.1, "rebuild_threshold": 0.3, "second_prefill_queue_tokens": 4000}
    )
    reqs = [RequestSpec(i, i * 0.01, 2500, 300 + 37 * (i % 9)) for i in range(80)]
    res, _ = run_checked(s, reqs)
    check_conservation(res, reqs)
    assert both_prefill_s(res) > 0.0


def test_dual_prefill_is_deterministic() -> None:
    """The same scenario twice gives identical records."""
    s = dual(pairs=2)
    reqs = make_requests(80, rate_rps=60.0, prompt=3000, output=40, seed=8)
    assert run_scenario(s, requests=reqs).requests == run_scenario(s, requests=reqs).requests


def test_dual_prefill_parameters_are_checked() -> None:
    """max_prefill_per_pair is 1 or 2 and the trigger is a non-negative token count."""
    with pytest.raises(ConfigurationError, match="max_prefill_per_pair"):
        run_scenario(dual({"max_prefill_per_pair": 3}), requests=[])
    with pytest.raises(ConfigurationError, match="second_prefill_queue_tokens"):
        run_scenario(dual({"second_prefill_queue_tokens": -1}), requests=[])
