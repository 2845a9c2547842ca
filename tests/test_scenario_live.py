"""The ``live`` scenario: ten minutes of the Azure conversation trace, replayed as recorded."""

from __future__ import annotations

import numpy as np

from llmtwin.models import ModelCatalog
from llmtwin.scenario.loader import load_scenario
from llmtwin.workload.generate import generate_requests
from llmtwin.workload.traces import load_trace


def test_live_replays_the_traces_first_ten_minutes() -> None:
    s = load_scenario("live")
    reqs = generate_requests(s.workload, s.seed, ModelCatalog().get(s.model).max_context)
    trace = load_trace("azure-conv")
    keep = trace.arrival_s < 600.0
    assert np.array_equal([r.arrival_s for r in reqs], trace.arrival_s[keep])
    assert np.array_equal([r.output_tokens for r in reqs], trace.output_tokens[keep])
    assert len(reqs) == 2867
    assert s.policy.name == "accellm"
    assert s.engine.preserve
    assert s.cluster.tp > 1  # PRESERVE prefetches during TP allreduces
