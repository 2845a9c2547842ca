"""Arrival processes: rates, burstiness, prefixes and trace replay with time scaling."""

from __future__ import annotations

import numpy as np
import pytest

from llmtwin.errors import ConfigurationError
from llmtwin.workload.arrivals import RenewalArrivals, ReplayArrivals


def rng(seed: int = 7) -> np.random.Generator:
    return np.random.default_rng(seed)


def gaps_cv(times: np.ndarray) -> float:
    g = np.diff(times)
    return float(g.std() / g.mean())


def test_poisson_rate_and_cv_match_on_a_large_sample() -> None:
    """100,000 Poisson arrivals at 20 req/s: rate within 1%, inter-arrival CV within 2% of 1."""
    t = RenewalArrivals(rng(), 20.0, 1.0).first(100_000)
    assert t[0] == 0.0
    assert np.all(np.diff(t) >= 0)
    assert (len(t) - 1) / t[-1] == pytest.approx(20.0, rel=0.01)
    assert gaps_cv(t) == pytest.approx(1.0, rel=0.02)


@pytest.mark.parametrize("cv", [0.5, 2.0, 4.0])
def test_gamma_arrivals_have_the_requested_rate_and_cv(cv: float) -> None:
    """Gamma gaps keep the mean rate and reach the coefficient of variation asked for."""
    t = RenewalArrivals(rng(), 5.0, cv).first(200_000)
    assert (len(t) - 1) / t[-1] == pytest.approx(5.0, rel=0.02)
    assert gaps_cv(t) == pytest.approx(cv, rel=0.05)


def test_within_a_duration_is_a_prefix_of_the_same_stream() -> None:
    """Arrivals in [0, d) are exactly the first ones the same seed gives by count."""
    within = RenewalArrivals(rng(3), 8.0, 2.0).within(500.0)
    first = RenewalArrivals(rng(3), 8.0, 2.0).first(len(within) + 1)
    assert within.max() < 500.0
    assert first[-1] >= 500.0
    np.testing.assert_allclose(within, first[:-1], rtol=1e-12)


def test_within_counts_about_rate_times_duration() -> None:
    """A 1,000 s window at 10 req/s holds 10,000 +- 4% arrivals."""
    n = len(RenewalArrivals(rng(), 10.0).within(1000.0))
    assert n == pytest.approx(10_000, rel=0.04)


def test_non_positive_rate_or_cv_is_refused() -> None:
    """A zero rate or CV is a configuration error, not a hang or a division by zero."""
    with pytest.raises(ConfigurationError):
        RenewalArrivals(rng(), 0.0)
    with pytest.raises(ConfigurationError):
        RenewalArrivals(rng(), 1.0, cv=0.0)


def test_replay_divides_gaps_by_the_time_scale() -> None:
    """Time scale 2 halves every gap (twice the load) and starts at 0."""
    trace = np.array([10.0, 11.0, 13.0, 17.0])
    np.testing.assert_allclose(ReplayArrivals(trace, 1.0).all(), [0.0, 1.0, 3.0, 7.0])
    np.testing.assert_allclose(ReplayArrivals(trace, 2.0).all(), [0.0, 0.5, 1.5, 3.5])
    np.testing.assert_allclose(ReplayArrivals(trace, 2.0).within(1.5), [0.0, 0.5])
    np.testing.assert_allclose(ReplayArrivals(trace, 0.5).first(2), [0.0, 2.0])


def test_replay_cannot_invent_requests() -> None:
    """Asking a replay for more requests than the trace holds is an error."""
    with pytest.raises(ConfigurationError, match="only 2"):
        ReplayArrivals(np.array([0.0, 1.0]), 1.0).first(3)
