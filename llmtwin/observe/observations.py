"""What the services report at each window boundary, as plain numbers: the metrics exporter's input.

A proposed contract between the simulation and ``services/fleet_metrics.py``. At the end of
a virtual-time window (at most every ``metrics_interval_s`` of wall time, and at the run's end),
each device service builds one :class:`InstanceWindow` and one :class:`TokenPieces` per instance
it leads, the balancer one :class:`ClusterWindow` and its tracker's :class:`EngineRequests`, and
the conductor one :class:`ConductorWindow` per window; at the start of a run every exporter gets
the run's :class:`RunInfo`.
Gauges are values *now* (at ``at_s``); everything else counts what happened *since the previous
record* of the same run, so the exporter only adds. A request's tokens may come from two
instances (AcceLLM, disaggregated), so what needs the whole request (TTFT, gaps, finished
requests, SLOs) is worked out by the balancer's :class:`~llmtwin.observe.request_tracker.RequestTracker`
from every instance's :class:`TokenPieces`; each device reports only what its instances did.

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
from enum import IntEnum

import msgspec
import numpy as np

from llmtwin.arrays import FloatArray

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
    engines: tuple[str, ...] = ()
    """Every instance of the cluster (``engine`` label values)."""


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


@dataclass(frozen=True, slots=True)
class InstanceWindow:
    """One instance at the end of a window (gauges) and what it did since its last record (the rest).

    Built by :class:`llmtwin.cluster.observer.InstanceObserver` from the iterations that started
    before the window's time (final: no later message can change them). Memory in bytes per device
    of the instance; times in virtual seconds.
    """

    engine: str
    """``engine`` label: the instance's component id (``instance-3``)."""
    at_s: float
    # -- gauges: the state at at_s ---------------------------------------------------------------------
    role: str
    """``prefill``, ``decode``, ``mixed`` or ``idle`` (no iteration in flight)."""
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
    """Allreduce time / step time over the iterations of the latest record that had any."""
    # -- counts since the previous record ----------------------------------------------------------------
    iterations: int = 0
    generation_tokens: int = 0
    preemptions: int = 0
    iteration_tokens: Weighted = ()
    """Tokens per iteration (prefill tokens + decoding sequences)."""
    batch_sequences: Weighted = ()
    """Sequences per iteration."""
    busy_s: dict[str, float] = field(default_factory=dict)
    """Seconds computing, by what the iterations computed (``prefill``, ``decode``, ``mixed``)."""
    idle_s: dict[str, float] = field(default_factory=dict)
    """Seconds with nothing to compute, by the role held."""
    role_switches: int = 0
    kv_moved_bytes: float = 0.0
    handovers: int = 0
    allreduce_s: float = 0.0
    preserve_prefetched_bytes: float = 0.0
    preserve_saved_s: float = 0.0
    counted_to_s: float = 0.0
    """Busy and idle seconds are counted up to here: ``at_s``, or the end of the iteration in
    flight at ``at_s`` when later (never earlier than the previous record's)."""


@dataclass(frozen=True, slots=True)
class EngineRequests:
    """What the request tracker (:mod:`llmtwin.observe.request_tracker`) learnt about one engine's
    requests since its last record: first tokens, gaps between tokens, finished requests."""

    engine: str
    prompt_tokens: int = 0
    """Prompt tokens of the requests whose first token this engine produced."""
    ttft_s: tuple[float, ...] = ()
    token_gaps_s: FloatArray = field(default_factory=lambda: np.empty(0, dtype=np.float64))
    """Gap before each non-first token this engine produced (values in no particular order; an
    array: a record holds hundreds of thousands, which go into histograms in bulk)."""
    finished: tuple[FinishedRequest, ...] = ()
    """Requests whose last token this engine produced."""


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


class PieceKind(IntEnum):
    """How a piece of tokens follows the request's previous token."""

    FIRST = 0
    """It starts with the request's first token (its TTFT)."""
    CONT = 1
    """Its previous token was produced on the same instance, at ``prev_s``."""
    HOP = 2
    """Its previous token was produced elsewhere (or is unknown here): the tracker finds it."""


class TokenPieces(msgspec.Struct, frozen=True):
    """The tokens one instance produced in iterations ``[from_it, to_it)``, as pieces: piece ``p`` is
    ``count[p]`` tokens of request ``rid[p]`` in consecutive iterations from ``first_it[p]``, whose
    times are the next ``count[p]`` values of ``times_s``. Plain lists: the same record travels
    from a device service to the balancer's (``proto.control.TokenReport``)."""

    engine: str
    from_it: int
    to_it: int
    rid: list[int]
    first_it: list[int]
    count: list[int]
    kind: list[int]
    """:class:`PieceKind` of each piece."""
    prev_s: list[float]
    """The previous token's time for ``CONT`` pieces (NaN otherwise)."""
    times_s: list[float]
    scheduled_rid: list[int]
    scheduled_s: list[float]
    """New requests whose first prefill iteration started in these iterations, and its start."""
    final: bool = False
    """The instance's last record of the run (it has finished)."""


def split_pieces(p: TokenPieces) -> list[TokenPieces]:
    """``p`` as two records, half the pieces each, that add up to ``p`` when read in order (the
    first covers no iterations of its own, so the second's pieces are not taken as repeats)."""
    h = len(p.rid) // 2
    cut = sum(p.count[:h])
    first = TokenPieces(
        p.engine, p.from_it, p.from_it, p.rid[:h], p.first_it[:h], p.count[:h], p.kind[:h], p.prev_s[:h],
        p.times_s[:cut], p.scheduled_rid, p.scheduled_s,
    )  # fmt: skip
    second = TokenPieces(
        p.engine, p.from_it, p.to_it, p.rid[h:], p.first_it[h:], p.count[h:], p.kind[h:], p.prev_s[h:],
        p.times_s[cut:], [], [], p.final,
    )  # fmt: skip
    return [first, second]
