"""What the per-run plots draw, reduced from a run's result (numpy only, no matplotlib).

:class:`RunPlots` is small whatever the run's size (CDFs thinned to ``MAX_POINTS`` ranks, instance
records without their detail lists), so it can be handed to a worker process that renders the
PNGs while the main process writes the CSV files.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from llmtwin.cluster.quantiles import StreamQuantiles
from llmtwin.cluster.records import InstanceRecord, RunResult

FloatArray = npt.NDArray[np.float64]

MAX_POINTS = 2000
"""Most points drawn per curve."""

Cdf = tuple[FloatArray, FloatArray]
"""(values, cumulative fractions) of an empirical CDF."""


@dataclass(frozen=True, slots=True)
class LatencyCdfs:
    """The latency CDFs of one run, seconds."""

    ttft: Cdf
    tbt: Cdf
    """Every gap between consecutive tokens, pooled over requests."""
    e2e: Cdf


def cdf_ranks(n: int, max_points: int = MAX_POINTS) -> npt.NDArray[np.int64]:
    """The 0-based ranks a CDF of ``n`` samples is drawn at: at most ``max_points``, first and last
    included."""
    return np.unique(np.linspace(0, n - 1, min(n, max_points)).astype(np.int64))


def cdf_points(samples: FloatArray, max_points: int = MAX_POINTS) -> Cdf:
    """(values, cumulative fractions) of the empirical CDF, thinned to ``max_points`` ranks."""
    x = np.sort(samples)
    n = x.size
    if n == 0:
        return x, x
    ranks = cdf_ranks(n, max_points)
    return x[ranks], (ranks + 1) / n


def stream_cdf(values: StreamQuantiles, max_points: int = MAX_POINTS) -> Cdf:
    """:func:`cdf_points` of a stream's values (from its sketch when it kept none)."""
    if values.exact:
        return cdf_points(values.values(), max_points)
    if values.count == 0:
        return np.empty(0), np.empty(0)
    ranks = cdf_ranks(values.count, max_points)
    return values.order_statistics(ranks), (ranks + 1) / values.count


def latency_cdfs(result: RunResult) -> LatencyCdfs:
    t = result.table
    ttft = t.ttft_s
    return LatencyCdfs(
        ttft=cdf_points(ttft[~np.isnan(ttft)]),
        tbt=stream_cdf(result.tbt_gaps),
        e2e=cdf_points(t.e2e_s[t.completed]),
    )


@dataclass(frozen=True, slots=True)
class RunPlots:
    """Everything the per-run plots need."""

    policy: str
    scenario: str
    end_s: float
    latency: LatencyCdfs
    instances: list[InstanceRecord]
    """Without their detail lists (batch sizes, KV and role timelines)."""


def run_plots(result: RunResult) -> RunPlots:
    bare = [
        dataclasses.replace(i, batch_sizes=[], kv_timeline=[], role_timeline=[]) for i in result.instances
    ]
    return RunPlots(result.policy, result.scenario, result.end_s, latency_cdfs(result), bare)
