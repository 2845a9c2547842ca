"""Summary numbers on hand-built run results (values worked out by hand in the builders)."""

from __future__ import annotations

import dataclasses

import pytest
from report_builders import make_request, make_result

from llmtwin.errors import ConfigurationError
from llmtwin.report.summary import Distribution, summarize
from llmtwin.scenario.spec import SLOSpec


def test_latency_percentiles_use_linear_interpolation() -> None:
    """TTFT over started requests and TBT over all pooled gaps, numpy 'linear' percentiles."""
    s = summarize(make_result(), SLOSpec())
    assert s.ttft_s.count == 2
    assert s.ttft_s.p50 == pytest.approx(0.75)
    assert s.ttft_s.p90 == pytest.approx(0.95)
    assert s.ttft_s.mean == pytest.approx(0.75)
    # pooled gaps 0.1, 0.2, 0.5, 0.5, 0.6
    assert s.tbt_s.count == 5
    assert s.tbt_s.p50 == pytest.approx(0.5)
    assert s.tbt_s.p90 == pytest.approx(0.56)
    assert s.tbt_s.p99 == pytest.approx(0.596)
    assert s.tbt_s.mean == pytest.approx(0.38)
    assert s.tbt_s.max == pytest.approx(0.6)
    # per-request means 0.5 and 0.3
    assert s.tbt_request_mean_s.mean == pytest.approx(0.4)
    # E2E 2.0 and 1.4, completed requests only
    assert s.e2e_s.count == 2
    assert s.e2e_s.p50 == pytest.approx(1.7)


def test_counts_span_and_throughput() -> None:
    """Span runs from the first arrival to the last completion; rates divide by it."""
    s = summarize(make_result(), SLOSpec())
    assert (s.requests_total, s.requests_completed, s.requests_failed) == (3, 2, 1)
    assert s.failure_reasons == {"prompt too long": 1}
    assert s.span_s == pytest.approx(2.4)
    assert s.output_tokens == 7
    assert s.prompt_tokens == 20
    assert s.throughput_tokens_per_s == pytest.approx(7 / 2.4)
    assert s.throughput_requests_per_s == pytest.approx(2 / 2.4)
    assert s.preemptions == 2
    assert s.preempted_requests == 1
    assert s.kv_bytes_moved == pytest.approx(1.5e6)
    assert s.role_switches == 2
    assert s.mean_batch_size == pytest.approx(2.0)


def test_unfinished_request_counts_as_failed() -> None:
    """A request cut off by the end of the run is failed with reason 'unfinished'."""
    r = make_result()
    r = make_result(requests=[*r.requests, make_request(3, 1.0, [1.2, 1.3], output=10)])
    s = summarize(r, SLOSpec())
    assert s.requests_failed == 2
    assert s.failure_reasons == {"prompt too long": 1, "unfinished": 1}
    assert s.output_tokens == 9


def test_goodput_depends_on_the_tbt_statistic() -> None:
    """Only rid 1 meets TTFT <= 0.8 s; its p99 gap (0.592 s) misses 0.55 s, its mean (0.3 s) meets it."""
    p99 = summarize(make_result(), SLOSpec(ttft_s=0.8, tbt_s=0.55, tbt_stat="p99"))
    assert p99.goodput_requests_per_s == pytest.approx(0.0)
    mean = summarize(make_result(), SLOSpec(ttft_s=0.8, tbt_s=0.55, tbt_stat="mean"))
    assert mean.goodput_requests_per_s == pytest.approx(1 / 2.4)
    assert mean.slo_attainment == pytest.approx(1 / 3)
    loose = summarize(make_result(), SLOSpec(ttft_s=5.0, tbt_s=5.0))
    assert loose.goodput_requests_per_s == pytest.approx(2 / 2.4)


def test_single_token_request_meets_tbt_slo() -> None:
    """A request with one output token has no gap, so only its TTFT matters."""
    r = make_result(requests=[make_request(0, 0.0, [0.1])])
    s = summarize(r, SLOSpec(ttft_s=0.2, tbt_s=0.0))
    assert s.goodput_requests_per_s == pytest.approx(1 / 0.1)
    assert s.tbt_s == Distribution(0, None, None, None, None, None)


def test_unknown_tbt_statistic_is_refused() -> None:
    """An SLO over a TBT statistic the summary does not compute is a configuration error."""
    with pytest.raises(ConfigurationError):
        summarize(make_result(), SLOSpec(tbt_stat="p50"))


def test_idle_fraction_and_busy_by_role() -> None:
    """Idle = 1 - busy device-seconds / (devices x span), busy split per role."""
    s = summarize(make_result(), SLOSpec())
    assert s.devices == 4
    assert s.idle_fraction == pytest.approx(1 - 5.6 / 9.6)
    assert s.busy_fraction == pytest.approx({"decode": 3.6 / 9.6, "prefill": 2.0 / 9.6})
    assert s.idle_fraction_by_role == pytest.approx({"decode": 3.4 / 9.6, "prefill": 0.6 / 9.6})


def test_cost_efficiency_uses_the_device_price() -> None:
    """Tokens per device-second, cost in USD and tokens per USD from usd_per_device_hour."""
    s = summarize(make_result(usd=2.4), SLOSpec())
    assert s.tokens_per_device_s == pytest.approx(7 / 9.6)
    assert s.cost_usd == pytest.approx(9.6 / 3600 * 2.4)
    assert s.tokens_per_usd == pytest.approx(7 / (9.6 / 3600 * 2.4))
    unpriced = summarize(make_result(usd=None), SLOSpec())
    assert unpriced.cost_usd is None
    assert unpriced.tokens_per_usd is None


def test_summary_dict_has_the_required_keys_and_keeps_wall_stats_apart() -> None:
    """The issue's summary.json keys are present; wall-clock figures only under 'run'."""
    d = summarize(make_result(), SLOSpec()).to_dict()
    for key in (
        "policy",
        "requests_completed",
        "requests_failed",
        "throughput_tokens_per_s",
        "idle_fraction",
    ):
        assert key in d
    for key in ("ttft_s", "tbt_s", "e2e_s"):
        assert set(d[key]) >= {"p50", "p90", "p99", "mean"}
    assert d["run"] == {"events": 42.0, "wall_s": 0.123}
    assert "wall_s" not in {k for k in d if k != "run"}


def test_empty_run_has_no_rates() -> None:
    """No requests: zero span, rates None instead of a division by zero."""
    r = dataclasses.replace(make_result(requests=[]), end_s=0.0)
    s = summarize(r, SLOSpec())
    assert s.span_s == 0.0
    assert s.throughput_tokens_per_s is None
    assert s.idle_fraction is None
    assert s.ttft_s.p50 is None
