"""What the services report at each window boundary, as plain numbers: the metrics exporter's input.

A proposed contract between the simulation and ``services/fleet_metrics.py``. At the end of
every virtual-time window, each device service builds one :class:`InstanceWindow` per instance
it leads, the balancer one :class:`ClusterWindow`, and the conductor one
:class:`ConductorWindow`; at the start of a run every exporter gets the run's :class:`RunInfo`.
Gauges are values *now* (at ``at_s``); everything else counts what happened *since the previous
window* of the same run, so the exporter only adds.

Why the totals then agree with summary.json: every token, first token, preemption, iteration and
finished request is reported exactly once, by the instance that produced it, in the window in
which it happened (the reductions in :mod:`llmtwin.report.summary` count the same things);
:func:`llmtwin.observe.agreement.summary_mismatches` checks it.

Repeated observations are run-length encoded (:data:`Weighted`): the engine commits runs of
identical iterations as one segment, whose token gaps and batch sizes are one value many times.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from llmtwin.cluster.records import RequestRecord

Weighted = tuple[tuple[float, int], ...]
"""Observations as (value, how many times) pairs."""


def weighted(values: Iterable[float]) -> Weighted:
    """Run-length encode observations (consecutive equal values merged)."""
    out: list[tuple[float, int]] = []
    for v in values:
        if out and out[-1][0] == v:
            out[-1] = (v, out[-1][1] + 1)
        else:
            out.append((v, 1))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class RunInfo:
    """What every exporter knows about a run from its start (labels and cluster constants)."""

    run_id: str
    scenario: str
    policy: str
    model_name: str
    """``model_name`` label: the scenario's model."""
    hardware: str
    devices: int
    usd_per_device_hour: float | None
    slo_ttft_s: float
    slo_tbt_s: float
    slo_tbt_stat: str
    pairs: tuple[tuple[str, str], ...] = ()
    """AcceLLM pairs as (engine, engine); pair k is ``pairs[k]``."""
    max_model_len: int = 8192
    """The model's context length, tokens: the top of the token-count buckets."""


@dataclass(frozen=True, slots=True)
class FinishedRequest:
    """One request that produced its last token in the window (virtual seconds)."""

    rid: int
    arrival_s: float
    scheduled_s: float
    """Start of the first iteration that computed for it (end of its queueing)."""
    first_token_s: float
    completion_s: float
    """Time of its last token."""
    prompt_tokens: int
    generated_tokens: int
    finished_reason: str = "stop"

    @property
    def e2e_s(self) -> float:
        return self.completion_s - self.arrival_s

    @property
    def queue_s(self) -> float:
        return self.scheduled_s - self.arrival_s

    @property
    def prefill_s(self) -> float:
        return self.first_token_s - self.scheduled_s

    @property
    def decode_s(self) -> float:
        return self.completion_s - self.first_token_s

    @property
    def inference_s(self) -> float:
        return self.completion_s - self.scheduled_s

    @property
    def mean_tpot_s(self) -> float | None:
        """Mean gap between its tokens; None with fewer than two tokens."""
        n = self.generated_tokens - 1
        return self.decode_s / n if n > 0 else None


def finished_request(rec: RequestRecord, scheduled_s: float) -> FinishedRequest:
    """The observation of a completed request's record (``scheduled_s``: its first iteration's
    start, which :class:`RequestRecord` does not hold)."""
    if rec.first_token_s is None or rec.completion_s is None:
        raise ValueError(f"request {rec.rid} has not completed")
    return FinishedRequest(
        rid=rec.rid,
        arrival_s=rec.arrival_s,
        scheduled_s=scheduled_s,
        first_token_s=rec.first_token_s,
        completion_s=rec.completion_s,
        prompt_tokens=rec.prompt_tokens,
        generated_tokens=rec.generated_tokens,
    )


@dataclass(frozen=True, slots=True)
class InstanceWindow:
    """One instance at the end of a window (gauges) and what it did during the window (the rest).

    Memory in bytes per device of the instance; times in virtual seconds.
    """

    engine: str
    """``engine`` label: the instance's component id (``instance-3``)."""
    at_s: float
    # -- gauges: the state at at_s ---------------------------------------------------------------------
    role: str
    """``prefill``, ``decode``, ``mixed`` or ``idle`` (nothing to run)."""
    running: int
    waiting: int
    kv_primary_bytes: float
    kv_redundant_bytes: float
    kv_capacity_bytes: float
    hbm_used_bytes: float
    hbm_capacity_bytes: float
    l2_capacity_bytes: float
    preserve_l2_bytes: float = 0.0
    """Bytes the latest decode step's PRESERVE plan placed in L2 (0 without PRESERVE)."""
    allreduce_share: float = 0.0
    """Allreduce time / step time over this window's iterations (0 when none ran)."""
    # -- counts since the previous window ------------------------------------------------------------
    iterations: int = 0
    prompt_tokens: int = 0
    """Prompt tokens of the requests whose first token this instance produced in the window."""
    generation_tokens: int = 0
    preemptions: int = 0
    ttft_s: tuple[float, ...] = ()
    """TTFT of each first token produced in the window."""
    token_gaps_s: Weighted = ()
    """Gap before each non-first token produced in the window."""
    iteration_tokens: Weighted = ()
    """Tokens per iteration (prefill tokens + decoding sequences)."""
    batch_sequences: Weighted = ()
    """Sequences per iteration."""
    busy_s: dict[str, float] = field(default_factory=dict)
    """Seconds computing, by the role held (``prefill``, ``decode``, ``mixed``)."""
    idle_s: dict[str, float] = field(default_factory=dict)
    """Seconds with nothing to compute, by the role held."""
    role_switches: int = 0
    kv_moved_bytes: float = 0.0
    link_busy_s: float = 0.0
    handovers: int = 0
    allreduce_s: float = 0.0
    preserve_prefetched_bytes: float = 0.0
    preserve_saved_s: float = 0.0
    finished: tuple[FinishedRequest, ...] = ()
    """Requests whose last token this instance produced in the window."""


@dataclass(frozen=True, slots=True)
class ClusterWindow:
    """The balancer's view at the end of a window: requests in and out of the cluster."""

    at_s: float
    """The window's end; the balancer's last record of a run is at the run's end (its last
    completion), so cost and goodput then equal summary.json's."""
    arrived: int = 0
    finished: int = 0
    slo_met: int = 0
    """Finished requests that met both SLOs (``llmtwin.report.summary.meets_slo``)."""
    failed: dict[str, int] = field(default_factory=dict)
    """Requests failed in the window, by reason."""
    first_arrival_s: float | None = None
    """The run's first arrival (None before it)."""
    last_completion_s: float | None = None
    """The run's latest completion so far (None before the first)."""


@dataclass(frozen=True, slots=True)
class ConductorWindow:
    """The conductor's pacing at the end of a window."""

    at_s: float
    pace: float
    """Requested virtual seconds per wall second; ``inf`` = as fast as possible."""
    speed: float
    """Achieved virtual seconds per wall second over the latest wall second of windows."""
