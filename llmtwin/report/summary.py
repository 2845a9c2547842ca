"""One run reduced to the numbers people compare: latency percentiles, throughput, goodput, cost.

Definitions (docs/results.md repeats them):

* **Percentiles** are ``numpy.percentile`` with its default ``method="linear"`` (Hyndman-Fan
  type 7: linear interpolation between the two nearest order statistics). ``mean`` is the
  arithmetic mean. A distribution without samples has ``None`` everywhere (``null`` in JSON).
* **TTFT** = first token - arrival, over requests that produced a first token.
* **TBT** percentiles pool every gap between consecutive tokens of every request (a long
  request weighs by its token count). They are exact up to ``quantiles.EXACT_LIMIT`` (16.8
  million) gaps; a larger run reads them from a log-bucketed sketch, each within 0.0122% of
  the exact value (``llmtwin/cluster/quantiles.py``). Their mean is the exactly rounded sum of
  the requests' gap sums over the count. ``tbt_request_mean_s`` is the distribution of the
  per-request mean gap instead (every request weighs the same).
* **E2E** (job completion time) = completion - arrival, over completed requests.
* **Span** = first arrival to last completion (to the run's end if nothing completed). Every
  rate below divides by it.
* **Throughput** = generated (output) tokens of all requests / span; requests/s = completed / span.
* **Goodput** = completed requests meeting both SLOs / span. A request meets the TTFT SLO when
  TTFT <= ``slo.ttft_s`` and the TBT SLO when its own ``slo.tbt_stat`` (mean, p90 or p99 of
  its gaps) <= ``slo.tbt_s``; a request with one output token has no gap and meets the TBT SLO.
* **Idle fraction** = 1 - busy device-seconds / (devices x span), where an instance's busy
  device-seconds are its busy seconds (all roles, summed over its iterations and exactly
  rounded) times its device count. ``busy_fraction``
  splits the busy part by role the same way, and ``idle_fraction_by_role`` the idle part by
  the role the instance held while idle (from ``InstanceRecord.idle_s_by_role``).
* **Cost**: tokens per accelerator-second = output tokens / (devices x span); cost in USD =
  devices x span / 3600 x the catalog's ``usd_per_hour``; tokens per USD = output tokens / cost
  (``None`` when the hardware has no price).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from llmtwin.cluster.records import InstanceRecord, RequestTable, RunResult
from llmtwin.errors import ConfigurationError
from llmtwin.faults.figures import fault_figures
from llmtwin.scenario.spec import SLOSpec

PERCENTILES = (50.0, 90.0, 99.0)
"""Percentiles every latency distribution reports."""

TBT_STATS = ("mean", "p90", "p99")
"""Per-request TBT statistics an SLO may bound."""


@dataclass(frozen=True, slots=True)
class Distribution:
    """Percentiles, mean and max of one latency, seconds; ``None`` when there are no samples."""

    count: int
    p50: float | None
    p90: float | None
    p99: float | None
    mean: float | None
    max: float | None

    @classmethod
    def of(cls, samples: npt.ArrayLike) -> Distribution:
        a = np.asarray(samples, dtype=np.float64)
        if a.size == 0:
            return cls(0, None, None, None, None, None)
        p50, p90, p99 = (float(x) for x in np.percentile(a, PERCENTILES))
        return cls(int(a.size), p50, p90, p99, float(a.mean()), float(a.max()))

    def to_dict(self) -> dict[str, float | int | None]:
        return {
            "p50": self.p50,
            "p90": self.p90,
            "p99": self.p99,
            "mean": self.mean,
            "max": self.max,
            "count": self.count,
        }


def meets_slo(table: RequestTable, slo: SLOSpec) -> npt.NDArray[np.bool_]:
    """Per request: whether it completed within both SLOs (see the module docstring)."""
    if slo.tbt_stat not in TBT_STATS:
        raise ConfigurationError(
            f"unknown TBT statistic {slo.tbt_stat!r}; expected one of {', '.join(TBT_STATS)}"
        )
    stat = {"mean": table.tbt_mean_s, "p90": table.tbt_p90_s, "p99": table.tbt_p99_s}[slo.tbt_stat]
    ttft = table.ttft_s
    with np.errstate(invalid="ignore"):
        ok_tbt = np.isnan(stat) | (stat <= slo.tbt_s)
        return table.completed & ~np.isnan(ttft) & (ttft <= slo.ttft_s) & ok_tbt


@dataclass(frozen=True, slots=True)
class Summary:
    """The numbers of one run (units in names: seconds, tokens, bytes, USD)."""

    policy: str
    scenario: str
    seed: int
    hardware: str
    model: str
    tp: int
    instances: int
    devices: int
    requests_total: int
    requests_completed: int
    requests_failed: int
    """Requests that did not complete (a failure reason, or unfinished when the run ended)."""
    failure_reasons: dict[str, int]
    ttft_s: Distribution
    tbt_s: Distribution
    tbt_request_mean_s: Distribution
    e2e_s: Distribution
    span_s: float
    prompt_tokens: int
    """Prompt tokens of requests that got their first token."""
    output_tokens: int
    """Tokens generated, all requests."""
    throughput_tokens_per_s: float | None
    throughput_requests_per_s: float | None
    goodput_requests_per_s: float | None
    slo_attainment: float | None
    """Fraction of all requests that completed within both SLOs."""
    slo: SLOSpec
    idle_fraction: float | None
    busy_fraction: dict[str, float]
    idle_fraction_by_role: dict[str, float]
    tokens_per_device_s: float | None
    usd_per_device_hour: float | None
    cost_usd: float | None
    tokens_per_usd: float | None
    preemptions: int
    preempted_requests: int
    kv_bytes_moved: float
    role_switches: int
    mean_batch_size: float | None
    run: dict[str, float] = field(default_factory=dict)
    """Wall-clock statistics of the run (not deterministic; kept apart on purpose)."""
    faults: dict[str, float] = field(default_factory=dict)
    """Simulated failures' figures (llmtwin/faults/figures.py); empty without failures."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping; the keys of the issue's summary.json come first."""
        return {
            "policy": self.policy,
            "requests_completed": self.requests_completed,
            "requests_failed": self.requests_failed,
            "ttft_s": self.ttft_s.to_dict(),
            "tbt_s": self.tbt_s.to_dict(),
            "e2e_s": self.e2e_s.to_dict(),
            "throughput_tokens_per_s": self.throughput_tokens_per_s,
            "idle_fraction": self.idle_fraction,
            "scenario": self.scenario,
            "seed": self.seed,
            "hardware": self.hardware,
            "model": self.model,
            "tp": self.tp,
            "instances": self.instances,
            "devices": self.devices,
            "requests_total": self.requests_total,
            "failure_reasons": dict(self.failure_reasons),
            "tbt_request_mean_s": self.tbt_request_mean_s.to_dict(),
            "span_s": self.span_s,
            "prompt_tokens": self.prompt_tokens,
            "output_tokens": self.output_tokens,
            "throughput_requests_per_s": self.throughput_requests_per_s,
            "goodput_requests_per_s": self.goodput_requests_per_s,
            "slo_attainment": self.slo_attainment,
            "slo": {"ttft_s": self.slo.ttft_s, "tbt_s": self.slo.tbt_s, "tbt_stat": self.slo.tbt_stat},
            "busy_fraction": dict(self.busy_fraction),
            "idle_fraction_by_role": dict(self.idle_fraction_by_role),
            "tokens_per_device_s": self.tokens_per_device_s,
            "usd_per_device_hour": self.usd_per_device_hour,
            "cost_usd": self.cost_usd,
            "tokens_per_usd": self.tokens_per_usd,
            "preemptions": self.preemptions,
            "preempted_requests": self.preempted_requests,
            "kv_bytes_moved": self.kv_bytes_moved,
            "role_switches": self.role_switches,
            "mean_batch_size": self.mean_batch_size,
            "run": dict(self.run),
            **({"faults": dict(self.faults)} if self.faults else {}),
        }


def _ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


def _device_seconds_by_role(
    result: RunResult, seconds: Callable[[InstanceRecord], dict[str, float]]
) -> dict[str, float]:
    """Sum over instances of seconds per role x the instance's devices, roles sorted."""
    out: dict[str, float] = {}
    for inst in result.instances:
        for role, s in seconds(inst).items():
            out[role] = out.get(role, 0.0) + s * inst.devices
    return dict(sorted(out.items()))


def run_span(result: RunResult) -> tuple[float, float]:
    """(start, end) of the span, virtual seconds: first arrival to last completion."""
    t = result.table
    done = t.completion_s[~np.isnan(t.completion_s)]
    start = float(t.arrival_s.min()) if len(t) else 0.0
    end = float(done.max()) if done.size else max(result.end_s, start)
    return start, end


def tbt_distribution(result: RunResult) -> Distribution:
    """Every gap between tokens, pooled over requests (exact percentiles up to
    ``quantiles.EXACT_LIMIT`` gaps, a sketch within 0.0122% beyond); the mean is the exactly
    rounded sum of the requests' gap sums over their count."""
    g = result.tbt_gaps
    if g.count == 0:
        return Distribution(0, None, None, None, None, None)
    p50, p90, p99 = g.percentiles(PERCENTILES)
    return Distribution(g.count, p50, p90, p99, result.tbt_sum_s / g.count, float(g.max))


def summarize(result: RunResult, slo: SLOSpec) -> Summary:
    """Reduce a run to its :class:`Summary` (definitions in the module docstring)."""
    if slo.tbt_stat not in TBT_STATS:
        raise ConfigurationError(f"slo.tbt_stat must be one of {', '.join(TBT_STATS)}, got {slo.tbt_stat!r}")
    t = result.table
    start, end = run_span(result)
    span = end - start

    completed = t.completed
    n_completed = int(completed.sum())
    reasons = Counter(
        {
            t.reasons[c]: int(k)
            for c, k in zip(*np.unique(t.failure[t.failure >= 0], return_counts=True), strict=True)
        }
    )
    good = int(meets_slo(t, slo).sum())
    output_tokens = int(t.generated_tokens.sum())
    ttft = t.ttft_s

    devices = sum(i.devices for i in result.instances)
    device_s = devices * span
    busy_by_role = _device_seconds_by_role(result, lambda i: i.busy_s)
    idle_by_role = _device_seconds_by_role(result, lambda i: i.idle_s_by_role)
    busy_fraction = {role: s / device_s for role, s in busy_by_role.items()} if device_s > 0 else {}
    idle_fraction_by_role = {role: s / device_s for role, s in idle_by_role.items()} if device_s > 0 else {}
    idle = _ratio(device_s - sum(busy_by_role.values()), device_s)

    price = result.usd_per_device_hour
    cost = device_s / 3600.0 * price if price is not None else None
    iterations = sum(sum(i.batch_counts) for i in result.instances)
    batch_total = sum(int(np.dot(i.batch_counts, np.arange(len(i.batch_counts)))) for i in result.instances)

    return Summary(
        policy=result.policy,
        scenario=result.scenario,
        seed=result.seed,
        hardware=result.hardware,
        model=result.model,
        tp=result.tp,
        instances=len(result.instances),
        devices=devices,
        requests_total=len(t),
        requests_completed=n_completed,
        requests_failed=len(t) - n_completed,
        failure_reasons=dict(sorted(reasons.items())),
        ttft_s=Distribution.of(ttft[~np.isnan(ttft)]),
        tbt_s=tbt_distribution(result),
        tbt_request_mean_s=Distribution.of(t.tbt_mean_s[~np.isnan(t.tbt_mean_s)]),
        e2e_s=Distribution.of(t.e2e_s[completed]),
        span_s=span,
        prompt_tokens=int(t.prompt_tokens[~np.isnan(t.first_token_s)].sum()),
        output_tokens=output_tokens,
        throughput_tokens_per_s=_ratio(output_tokens, span),
        throughput_requests_per_s=_ratio(n_completed, span),
        goodput_requests_per_s=_ratio(good, span),
        slo_attainment=_ratio(good, len(t)),
        slo=slo,
        idle_fraction=idle,
        busy_fraction=busy_fraction,
        idle_fraction_by_role=idle_fraction_by_role,
        tokens_per_device_s=_ratio(output_tokens, device_s),
        usd_per_device_hour=price,
        cost_usd=cost,
        tokens_per_usd=_ratio(output_tokens, cost) if cost is not None else None,
        preemptions=int(t.preemptions.sum()),
        preempted_requests=int((t.preemptions > 0).sum()),
        kv_bytes_moved=float(sum(t.kv_bytes_moved.tolist())),
        role_switches=sum(i.role_switches for i in result.instances),
        mean_batch_size=batch_total / iterations if iterations else None,
        run=dict(sorted(result.stats.items())),
        faults=fault_figures(result, end),
    )
