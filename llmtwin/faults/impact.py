"""What a failure costs one policy: its run with the fault against the same run without it.

Both runs have the same requests (same scenario and seed), so each affected request is compared
with itself. Figures (``FaultImpact``):

* requests affected, recomputed (and their lost KV tokens), redirected (disaggregated: intact
  KV to another decode instance) and kept (AcceLLM: decoded on by the partner from its copy);
* the affected requests' latency: mean E2E added (faulty - fault-free, seconds), their E2E p99 and
  the p99 of their longest gap between tokens, with and without the fault;
* the whole run: E2E p99 and SLO attainment with and without the fault;
* capacity lost: device-seconds down (nominal), and the output tokens the cluster did not produce
  during the outage (from the first failure to the last recovery, or to the end) compared with
  the fault-free run, as a fraction of the fault-free run's tokens in that window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from llmtwin.cluster.records import RequestRecord, RunResult
from llmtwin.faults.figures import fault_figures
from llmtwin.report.summary import run_span, summarize
from llmtwin.scenario.spec import SLOSpec


@dataclass(frozen=True, slots=True)
class FaultImpact:
    policy: str
    affected: int
    recomputed: int
    recomputed_kv_tokens: int
    redirected: int
    kept: int
    affected_e2e_added_s: float
    """Mean over affected requests that completed in both runs."""
    affected_e2e_p99_s: tuple[float, float]
    """(with the fault, without)."""
    affected_gap_p99_s: tuple[float, float]
    """p99 over affected requests of each one's longest gap between tokens (with, without)."""
    e2e_p99_s: tuple[float, float]
    slo_attainment: tuple[float, float]
    down_device_s: float
    tokens_lost_fraction: float
    """Output tokens not produced during the outage, relative to the fault-free run."""
    unfinished: int
    """Requests the faulty run did not finish (every instance that could serve them down)."""


def fault_impact(faulty: RunResult, clean: RunResult, slo: SLOSpec) -> FaultImpact:
    _, end = run_span(faulty)
    fig = fault_figures(faulty, end)
    hit = sorted(faulty.faults.affected)
    pairs = [
        (faulty.requests[r], clean.requests[r])
        for r in hit
        if faulty.requests[r].e2e_s is not None and clean.requests[r].e2e_s is not None
    ]
    added = [(a.e2e_s or 0.0) - (b.e2e_s or 0.0) for a, b in pairs]
    s_f, s_c = summarize(faulty, slo), summarize(clean, slo)
    start = min((at for _, at, _ in faulty.faults.down), default=0.0)
    stop = max(((back if back is not None else math.inf) for _, _, back in faulty.faults.down), default=0.0)
    lost = _tokens_in(clean, start, stop) - _tokens_in(faulty, start, stop)
    base = _tokens_in(clean, start, stop)
    return FaultImpact(
        policy=faulty.policy,
        affected=len(hit),
        recomputed=int(fig.get("requests_recomputed", 0)),
        recomputed_kv_tokens=int(fig.get("recomputed_kv_tokens", 0)),
        redirected=int(fig.get("requests_redirected", 0)),
        kept=int(fig.get("requests_kept", 0)),
        affected_e2e_added_s=float(np.mean(added)) if added else 0.0,
        affected_e2e_p99_s=(
            _p99([a.e2e_s or 0.0 for a, _ in pairs]),
            _p99([b.e2e_s or 0.0 for _, b in pairs]),
        ),
        affected_gap_p99_s=(_p99([_gap(a) for a, _ in pairs]), _p99([_gap(b) for _, b in pairs])),
        e2e_p99_s=(s_f.e2e_s.p99 or 0.0, s_c.e2e_s.p99 or 0.0),
        slo_attainment=(s_f.slo_attainment or 0.0, s_c.slo_attainment or 0.0),
        down_device_s=fig.get("down_device_s", 0.0),
        tokens_lost_fraction=lost / base if base > 0 else 0.0,
        unfinished=sum(1 for r in faulty.requests if r.completion_s is None),
    )


def _tokens_in(result: RunResult, start: float, stop: float) -> int:
    return sum(int(np.count_nonzero((t >= start) & (t < stop))) for t in _times(result))


def _times(result: RunResult) -> list[np.ndarray]:
    return [np.asarray(r.token_times_s, dtype=np.float64) for r in result.requests]


def _gap(r: RequestRecord) -> float:
    t = r.token_times_s
    return float(np.max(np.diff(t))) if len(t) > 1 else 0.0


def _p99(xs: list[float]) -> float:
    return float(np.percentile(xs, 99)) if xs else 0.0
