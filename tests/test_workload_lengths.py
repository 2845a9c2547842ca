"""Length distributions: shapes, bounds, joint trace rows and parameter checking."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from llmtwin.errors import ConfigurationError
from llmtwin.workload.lengths import TraceLengths, length_param_problem, parametric_sampler
from llmtwin.workload.traces import Trace


def rngs(seed: int = 1) -> tuple[np.random.Generator, np.random.Generator]:
    return np.random.default_rng(seed), np.random.default_rng(seed + 100)


def make_trace(prompts: list[int], outputs: list[int]) -> Trace:
    n = len(prompts)
    return Trace(
        name="t",
        path=Path("t.csv"),
        arrival_s=np.arange(n, dtype=np.float64),
        prompt_tokens=np.array(prompts, dtype=np.int64),
        output_tokens=np.array(outputs, dtype=np.int64),
    )


def test_fixed_lengths_are_constant() -> None:
    """fixed gives every request the same prompt and output."""
    p, o = parametric_sampler("fixed", {"prompt_tokens": 512, "output_tokens": 64}, *rngs()).sample(5)
    assert p.tolist() == [512] * 5
    assert o.tolist() == [64] * 5


def test_uniform_lengths_cover_inclusive_bounds() -> None:
    """uniform draws integers in [min, max], both ends reached on a large sample."""
    params = {"prompt_min": 10, "prompt_max": 20, "output_min": 1, "output_max": 3}
    p, o = parametric_sampler("uniform", params, *rngs()).sample(20_000)
    assert (p.min(), p.max()) == (10, 20)
    assert (o.min(), o.max()) == (1, 3)
    assert p.mean() == pytest.approx(15.0, rel=0.01)


def test_lognormal_lengths_have_the_median_of_the_log_mean() -> None:
    """lognormal's median is exp(mean) and no length is below one token."""
    params = {"prompt_mean": np.log(1000.0), "prompt_sigma": 1.0, "output_mean": 0.0, "output_sigma": 2.0}
    p, o = parametric_sampler("lognormal", params, *rngs()).sample(50_000)
    assert np.median(p) == pytest.approx(1000.0, rel=0.03)
    assert o.min() >= 1


def test_trace_lengths_draw_whole_rows() -> None:
    """Sampling a trace keeps each prompt with its own output (the joint distribution)."""
    trace = make_trace([100, 200, 300], [1, 2, 3])
    p, o = TraceLengths(trace, np.random.default_rng(0)).sample(1000)
    assert set(zip(p.tolist(), o.tolist(), strict=True)) == {(100, 1), (200, 2), (300, 3)}


@pytest.mark.parametrize(
    ("kind", "params", "bad_key"),
    [
        ("fixed", {"prompt_tokens": 5}, "output_tokens"),
        ("fixed", {"prompt_tokens": 5, "output_tokens": 0}, "output_tokens"),
        ("fixed", {"prompt_tokens": 5.5, "output_tokens": 1}, "prompt_tokens"),
        ("uniform", {"prompt_min": 9, "prompt_max": 3, "output_min": 1, "output_max": 2}, "prompt_max"),
        (
            "lognormal",
            {"prompt_mean": 1, "prompt_sigma": -1, "output_mean": 1, "output_sigma": 1},
            "prompt_sigma",
        ),
        ("azure-conv", {"prompt_tokens": 5}, "prompt_tokens"),
        ("fixed", {"prompt_tokens": 5, "output_tokens": 5, "extra": 1}, "extra"),
    ],
)
def test_bad_length_params_name_the_parameter(kind: str, params: dict[str, float], bad_key: str) -> None:
    """Each wrong or missing parameter is reported by name, and the sampler refuses it."""
    problem = length_param_problem(kind, params)
    assert problem is not None
    assert problem[0] == bad_key
    if kind in ("fixed", "uniform", "lognormal"):
        with pytest.raises(ConfigurationError, match=bad_key):
            parametric_sampler(kind, params, *rngs())
