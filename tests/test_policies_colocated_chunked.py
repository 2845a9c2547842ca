"""Colocated serving with chunked prefill: the token budget bounds every iteration."""

from __future__ import annotations

import numpy as np
from test_cluster_colocated import check_conservation, make_requests, make_scenario, run_checked

from llmtwin.cluster.run import run_scenario
from llmtwin.scenario.spec import EngineConfig
from llmtwin.workload.request import RequestSpec


def test_same_as_the_engines_own_chunked_prefill_at_that_budget() -> None:
    """The policy is colocated serving on engines chunking to ``chunk_tokens``."""
    reqs = make_requests(80, rate_rps=30.0, seed=3)
    by_policy = run_scenario(
        make_scenario("colocated-chunked", {"chunk_tokens": 1024}, instances=2, engine=EngineConfig()),
        requests=reqs,
    )
    engine = EngineConfig(chunked_prefill=True, max_batch_tokens=1024)
    by_engine = run_scenario(make_scenario("colocated", instances=2, engine=engine), requests=reqs)
    assert by_policy.requests == by_engine.requests


def test_the_budget_bounds_every_iteration_and_the_decodes_gaps() -> None:
    """No iteration computes more than the budget (decodes + prompt chunks); a long prompt arriving
    while another request decodes is split, so that request's longest gap is far below the
    whole prompt's prefill, which it suffers without chunking."""
    reqs = [RequestSpec(0, 0.0, 200, 400), RequestSpec(1, 0.5, 7000, 5)]
    chunked = make_scenario("colocated-chunked", {"chunk_tokens": 512})
    res, insts = run_checked(chunked, reqs)
    check_conservation(res, reqs)
    log = insts[0].engine.log
    assert all(d + p <= 512 for d, p in zip(log.seg_decode, log.seg_prefill_tokens, strict=True))
    plain = run_scenario(make_scenario("colocated"), requests=reqs)
    gap = {
        name: float(np.max(np.diff(r.requests[0].token_times_s))) for name, r in (("c", res), ("p", plain))
    }
    assert gap["c"] < gap["p"] / 5
    ttft = [r.requests[1].ttft_s or 0.0 for r in (res, plain)]
    assert ttft[0] > ttft[1]
