"""The KV timeline records every change, including those after an instance's last iteration
(issue 10, item 7): a prefill instance that hands its KV over and goes idle shows it freed."""

from __future__ import annotations

import math

import pytest
from test_cluster_colocated import make_scenario

from llmtwin.cluster.run import cluster_context, run_scenario, step_model
from llmtwin.report.summary import run_span
from llmtwin.scenario.loader import load_scenario
from llmtwin.workload.request import RequestSpec


def test_a_release_after_the_last_iteration_is_recorded() -> None:
    """Disaggregated, one request: the prefill instance holds the prompt's KV from its only
    iteration until the decode instance has it, then frees it, while idle."""
    s = make_scenario("disaggregated", {"kv_transfer": "after_prefill"}, instances=2)
    res = run_scenario(s, requests=[RequestSpec(0, 0.0, 1000, 3)])
    ctx = cluster_context(s, step_model(s))
    prefill = res.instances[0]
    end_of_prefill = res.requests[0].token_times_s[0]
    times = [t for t, _, _ in prefill.kv_timeline]
    assert prefill.iterations == 1
    assert prefill.kv_peak_primary_bytes >= ctx.kv_bytes(1000) / ctx.tp
    last_t, primary, redundant = prefill.kv_timeline[-1]
    assert (primary, redundant) == (0.0, 0.0)
    assert last_t == pytest.approx(end_of_prefill + ctx.link.time(0, 1, ctx.kv_bytes(1000)), rel=1e-12)
    assert last_t > end_of_prefill
    assert times == sorted(times)


@pytest.mark.parametrize("policy", ["colocated", "disaggregated", "accellm"])
def test_every_timeline_ends_empty_and_its_mean_is_its_integral(policy: str) -> None:
    """When every request finished, every instance ends with no KV in use; the time-weighted mean
    in instances.csv is the integral of the recorded timeline over the run's span."""
    s = load_scenario("demo", ["workload.requests=80"], policy)
    res = run_scenario(s)
    start, end = run_span(res)
    for inst in res.instances:
        tl = inst.kv_timeline
        assert tl[-1][1:] == (0.0, 0.0)
        assert [t for t, _, _ in tl] == sorted(t for t, _, _ in tl)
        bounds = [min(max(t, start), end) for t, _, _ in tl] + [end]
        integral = math.fsum(
            (p + r) * (b - a) for (_, p, r), a, b in zip(tl, bounds[:-1], bounds[1:], strict=True)
        )
        assert inst.kv_mean_total_bytes == pytest.approx(integral / (end - start), rel=1e-12)
        assert inst.kv_peak_total_bytes == max(p + r for _, p, r in tl)
