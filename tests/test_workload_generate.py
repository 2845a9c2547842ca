"""generate_requests: determinism, independent random streams, counts, replay and clipping."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from llmtwin.errors import ConfigurationError
from llmtwin.scenario.spec import WorkloadSpec
from llmtwin.workload.generate import clip_lengths, generate_requests
from llmtwin.workload.request import RequestSpec

CONTEXT = 4096


def workload(**changes: object) -> WorkloadSpec:
    """A small Poisson workload with Azure conversation lengths; ``changes`` replace fields."""
    return dataclasses.replace(WorkloadSpec(rate_rps=10.0, requests=500), **changes)  # type: ignore[arg-type]


def lengths(reqs: list[RequestSpec]) -> list[tuple[int, int]]:
    return [(r.prompt_tokens, r.output_tokens) for r in reqs]


def test_same_seed_same_requests() -> None:
    """Two generations with one seed are identical."""
    assert generate_requests(workload(), 5, CONTEXT) == generate_requests(workload(), 5, CONTEXT)


def test_different_seeds_differ_in_arrivals_and_lengths() -> None:
    """Another seed changes both the arrival times and the lengths."""
    a, b = generate_requests(workload(), 1, CONTEXT), generate_requests(workload(), 2, CONTEXT)
    assert [r.arrival_s for r in a] != [r.arrival_s for r in b]
    assert lengths(a) != lengths(b)


def test_requests_are_numbered_in_arrival_order_from_zero() -> None:
    """rid is 0..n-1, arrivals are sorted and the first one is at 0 s."""
    reqs = generate_requests(workload(arrival="gamma", cv=3.0), 0, CONTEXT)
    assert [r.rid for r in reqs] == list(range(500))
    times = [r.arrival_s for r in reqs]
    assert times[0] == 0.0
    assert times == sorted(times)


def test_changing_the_arrival_process_keeps_the_lengths() -> None:
    """Poisson, bursty Gamma and another rate give the same length sequence for one seed."""
    base = lengths(generate_requests(workload(), 3, CONTEXT))
    assert lengths(generate_requests(workload(arrival="gamma", cv=4.0), 3, CONTEXT)) == base
    assert lengths(generate_requests(workload(rate_rps=99.0), 3, CONTEXT)) == base


def test_changing_the_lengths_keeps_the_arrivals() -> None:
    """Switching the length distribution leaves every arrival time unchanged."""
    base = [r.arrival_s for r in generate_requests(workload(), 3, CONTEXT)]
    fixed = workload(lengths="fixed", length_params={"prompt_tokens": 8, "output_tokens": 8})
    assert [r.arrival_s for r in generate_requests(fixed, 3, CONTEXT)] == base


def test_prompt_and_output_streams_are_independent() -> None:
    """Changing only the output distribution of a lognormal workload keeps every prompt (with a
    context too large for clipping, which otherwise trims prompts to what outputs leave)."""
    params = {"prompt_mean": 6.0, "prompt_sigma": 1.0, "output_mean": 4.0, "output_sigma": 0.5}
    a = generate_requests(workload(lengths="lognormal", length_params=params), 4, 10**9)
    b = generate_requests(
        workload(lengths="lognormal", length_params=params | {"output_sigma": 1.5}), 4, 10**9
    )
    assert [r.prompt_tokens for r in a] == [r.prompt_tokens for r in b]
    assert [r.output_tokens for r in a] != [r.output_tokens for r in b]


def test_duration_keeps_the_arrivals_before_it() -> None:
    """duration_s generates every arrival before it: the same requests as by count, up to then."""
    by_time = generate_requests(workload(requests=None, duration_s=30.0), 9, CONTEXT)
    by_count = generate_requests(workload(requests=len(by_time)), 9, CONTEXT)
    assert by_time[-1].arrival_s < 30.0
    assert len(by_time) == pytest.approx(300, rel=0.25)
    assert lengths(by_time) == lengths(by_count)
    np.testing.assert_allclose([r.arrival_s for r in by_time], [r.arrival_s for r in by_count], rtol=1e-12)


def test_requests_and_duration_together_stop_at_the_first_limit() -> None:
    """With both limits, generation stops at whichever is reached first."""
    assert len(generate_requests(workload(requests=10, duration_s=1000.0), 0, CONTEXT)) == 10
    few = generate_requests(workload(requests=10_000, duration_s=5.0), 0, CONTEXT)
    assert 10 < len(few) < 100


def test_poisson_workload_rate_on_a_large_sample() -> None:
    """20,000 Poisson requests at 10 req/s arrive at 10 req/s within 2%."""
    reqs = generate_requests(workload(requests=20_000), 0, CONTEXT)
    assert (len(reqs) - 1) / reqs[-1].arrival_s == pytest.approx(10.0, rel=0.02)


def test_trace_replay_pairs_timestamps_and_lengths_and_scales_time(tmp_path: Path) -> None:
    """Replaying a trace with its own lengths keeps rows together; time_scale 4 quarters the gaps."""
    path = tmp_path / "mini.csv"
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n0,100,5\n2,200,6\n6,300,7\n")
    w = WorkloadSpec(arrival="trace", trace=str(path), lengths="trace", time_scale=4.0)
    reqs = generate_requests(w, 0, CONTEXT)
    assert [(r.arrival_s, r.prompt_tokens, r.output_tokens) for r in reqs] == [
        (0.0, 100, 5),
        (0.5, 200, 6),
        (1.5, 300, 7),
    ]
    assert len(generate_requests(dataclasses.replace(w, requests=2), 0, CONTEXT)) == 2
    assert len(generate_requests(dataclasses.replace(w, duration_s=1.0), 0, CONTEXT)) == 2


def test_azure_lengths_replayed_at_double_speed_double_the_rate() -> None:
    """The shipped conversation trace replayed at time_scale 2 arrives at twice its rate."""
    w = WorkloadSpec(arrival="trace", trace="azure-conv", lengths="trace", time_scale=2.0)
    reqs = generate_requests(w, 0, 8192)
    assert len(reqs) == 19_366
    assert (len(reqs) - 1) / reqs[-1].arrival_s == pytest.approx(2 * 5.53, abs=0.02)


def test_every_request_fits_the_context() -> None:
    """With a 2,048-token context no request has prompt + output above 2,048 and none is empty."""
    reqs = generate_requests(workload(requests=5000), 0, 2048)
    assert max(r.prompt_tokens + r.output_tokens for r in reqs) <= 2048
    assert min(min(r.prompt_tokens, r.output_tokens) for r in reqs) >= 1


def test_clipping_trims_the_prompt_to_what_the_output_leaves() -> None:
    """Without max_prompt_tokens the output is kept and the prompt is cut to fit."""
    p, o = clip_lengths(np.array([5000, 100, 10]), np.array([100, 50, 9000]), 4096)
    assert p.tolist() == [3996, 100, 1]
    assert o.tolist() == [100, 50, 4095]


def test_clipping_with_max_prompt_tokens_stops_the_output_at_the_context() -> None:
    """With max_prompt_tokens the prompt is capped there and the output stops at the context."""
    p, o = clip_lengths(np.array([5000, 100]), np.array([1000, 50]), 4096, max_prompt_tokens=4000)
    assert p.tolist() == [4000, 100]
    assert o.tolist() == [96, 50]


def test_zero_output_becomes_one_token() -> None:
    """A request that generated nothing still gets the token its prefill produces."""
    _, o = clip_lengths(np.array([10]), np.array([0]), 4096)
    assert o.tolist() == [1]


def test_max_prompt_tokens_must_leave_room_for_an_output() -> None:
    """max_prompt_tokens at or above the context is a configuration error."""
    with pytest.raises(ConfigurationError, match="max_prompt_tokens"):
        clip_lengths(np.array([10]), np.array([10]), 4096, max_prompt_tokens=4096)


def test_workload_without_a_size_is_refused() -> None:
    """A Poisson workload with neither requests nor duration_s cannot be generated."""
    with pytest.raises(ConfigurationError, match="requests or duration_s"):
        generate_requests(workload(requests=None), 0, CONTEXT)


def test_a_single_phase_is_its_workload_alone() -> None:
    """A workload of one phase gives the requests that phase gives on its own."""
    phase = workload(requests=None, duration_s=20.0, arrival="gamma", cv=2.0)
    alone = generate_requests(phase, 4, CONTEXT)
    assert generate_requests(WorkloadSpec(phases=(phase,)), 4, CONTEXT) == alone


def test_phases_follow_each_other_with_their_own_arrivals_and_lengths() -> None:
    """Conversation at 10 req/s for 30 s, then fixed long prompts at 2 req/s for 20 s: the second
    phase starts at 30 s, every request has its phase's lengths, and caps apply to the whole."""
    conv = workload(requests=None, duration_s=30.0)
    code = workload(
        requests=None, duration_s=20.0, rate_rps=2.0, lengths="fixed",
        length_params={"prompt_tokens": 3000, "output_tokens": 5},
    )  # fmt: skip
    reqs = generate_requests(WorkloadSpec(phases=(conv, code)), 1, CONTEXT)
    first = [r for r in reqs if r.arrival_s < 30.0]
    second = [r for r in reqs if r.arrival_s >= 30.0]
    assert [r.rid for r in reqs] == list(range(len(reqs)))
    assert 200 < len(first) < 400
    assert 20 < len(second) < 60
    assert second[0].arrival_s == 30.0  # every phase starts with an arrival
    assert all((r.prompt_tokens, r.output_tokens) == (3000, 5) for r in second)
    assert all(r.arrival_s < 50.0 for r in second)
    capped = generate_requests(WorkloadSpec(phases=(conv, code), requests=len(first) + 3), 1, CONTEXT)
    assert capped == reqs[: len(first) + 3]
