"""Summary statistics of a request stream (a trace file or a generated workload)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from llmtwin.workload.request import RequestSpec
from llmtwin.workload.traces import Trace


@dataclass(frozen=True, slots=True)
class Summary:
    """Distribution of one token count. Percentiles interpolate linearly (numpy's default);
    ``std`` is the population standard deviation."""

    min: float
    mean: float
    median: float
    p90: float
    p99: float
    max: float
    std: float

    @classmethod
    def of(cls, values: npt.ArrayLike) -> Summary:
        x = np.asarray(values, dtype=np.float64)
        if x.size == 0:
            nan = float("nan")
            return cls(nan, nan, nan, nan, nan, nan, nan)
        p50, p90, p99 = np.percentile(x, [50, 90, 99])
        return cls(
            min=float(x.min()),
            mean=float(x.mean()),
            median=float(p50),
            p90=float(p90),
            p99=float(p99),
            max=float(x.max()),
            std=float(x.std()),
        )


@dataclass(frozen=True, slots=True)
class StreamStats:
    """Arrivals and lengths of a request stream."""

    count: int
    duration_s: float
    """Last arrival minus first arrival, seconds."""
    rate_rps: float
    """Requests per second: 1 / the mean inter-arrival gap."""
    interarrival_cv: float
    """Coefficient of variation (std / mean) of the gaps between consecutive arrivals."""
    prompt_tokens: Summary
    output_tokens: Summary

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def stream_stats(
    arrival_s: npt.ArrayLike, prompt_tokens: npt.ArrayLike, output_tokens: npt.ArrayLike
) -> StreamStats:
    """Statistics of a stream given its arrival times (any order) and lengths."""
    times = np.sort(np.asarray(arrival_s, dtype=np.float64))
    gaps = np.diff(times)
    duration = float(times[-1] - times[0]) if times.size else 0.0
    mean_gap = float(gaps.mean()) if gaps.size else 0.0
    return StreamStats(
        count=int(times.size),
        duration_s=duration,
        rate_rps=1.0 / mean_gap if mean_gap > 0 else float("nan"),
        interarrival_cv=float(gaps.std()) / mean_gap if mean_gap > 0 else float("nan"),
        prompt_tokens=Summary.of(prompt_tokens),
        output_tokens=Summary.of(output_tokens),
    )


def trace_stats(trace: Trace) -> StreamStats:
    return stream_stats(trace.arrival_s, trace.prompt_tokens, trace.output_tokens)


def request_stats(requests: Sequence[RequestSpec]) -> StreamStats:
    return stream_stats(
        [r.arrival_s for r in requests],
        [r.prompt_tokens for r in requests],
        [r.output_tokens for r in requests],
    )
