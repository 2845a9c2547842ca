"""What a run produces: a table of requests, one record per instance, and the run's totals.

These records are the contract between the simulation (in-process or over NATS) and every
output (summary.json, requests.csv, instances.csv, plots). Times are virtual seconds.

Memory stays flat at scale: a finished request is one row of :class:`RequestTable` (about 120
bytes of numpy columns), not an object with its token times; an instance keeps its statistics
and bounded plot summaries. A run made with ``detail=True`` (the default of ``run_scenario``,
meant for tests and small studies) also keeps every token time, batch size and KV or role change
(:attr:`RunResult.requests`, ``InstanceRecord.batch_sizes``, ``.kv_timeline``, ``.role_timeline``).
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from llmtwin.cluster.quantiles import StreamQuantiles
from llmtwin.errors import ConfigurationError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(slots=True)
class RequestRecord:
    """Everything measured about one request (``RunResult.requests``, detail runs only)."""

    rid: int
    arrival_s: float
    prompt_tokens: int
    output_tokens: int
    """Tokens requested."""
    generated_tokens: int = 0
    """Tokens actually produced (== output_tokens when completed)."""
    first_token_s: float | None = None
    completion_s: float | None = None
    token_times_s: list[float] = field(default_factory=list)
    """Virtual time of every generated token, first token included."""
    instances: list[int] = field(default_factory=list)
    """Instances that computed for this request, in order of first use."""
    preemptions: int = 0
    kv_bytes_moved: float = 0.0
    """Bytes of KV cache sent between instances for this request (transfers and replicas)."""
    failed_reason: str | None = None

    @property
    def ttft_s(self) -> float | None:
        return None if self.first_token_s is None else self.first_token_s - self.arrival_s

    @property
    def e2e_s(self) -> float | None:
        return None if self.completion_s is None else self.completion_s - self.arrival_s

    def tbt_s(self) -> list[float]:
        """Gaps between consecutive tokens, seconds."""
        t = self.token_times_s
        return [b - a for a, b in itertools.pairwise(t)]


@dataclass(slots=True, eq=False)
class RequestTable:
    """One row per request, by request id (0..n-1); NaN where a time or statistic does not exist.

    ``tbt_*`` are statistics of the request's own gaps between tokens (``numpy.mean``,
    ``numpy.percentile`` and max of them; NaN with fewer than two tokens). ``failure`` indexes
    ``reasons`` (-1: completed). ``instances`` lists, per row, the instances that computed for the
    request in order of first use, padded with -1.
    """

    arrival_s: FloatArray
    prompt_tokens: IntArray
    output_tokens: IntArray
    generated_tokens: IntArray
    first_token_s: FloatArray
    completion_s: FloatArray
    tbt_mean_s: FloatArray
    tbt_p90_s: FloatArray
    tbt_p99_s: FloatArray
    tbt_max_s: FloatArray
    preemptions: IntArray
    kv_bytes_moved: FloatArray
    failure: IntArray
    instances: npt.NDArray[np.int32]
    reasons: list[str] = field(default_factory=list)

    @classmethod
    def empty(cls, arrival_s: FloatArray, prompt_tokens: IntArray, output_tokens: IntArray) -> RequestTable:
        n = arrival_s.size

        def nan() -> FloatArray:
            return np.full(n, np.nan)

        def zeros() -> IntArray:
            return np.zeros(n, dtype=np.int64)

        return cls(
            np.asarray(arrival_s, dtype=np.float64), np.asarray(prompt_tokens, dtype=np.int64),
            np.asarray(output_tokens, dtype=np.int64), zeros(), nan(), nan(), nan(), nan(), nan(),
            nan(), zeros(), np.zeros(n), np.full(n, -1, dtype=np.int64),
            np.full((n, 1), -1, dtype=np.int32),
        )  # fmt: skip

    def __len__(self) -> int:
        return int(self.arrival_s.size)

    def rows(self, lo: int, hi: int) -> RequestTable:
        """Rows ``lo .. hi-1`` (views of these columns; the reasons list is shared)."""
        columns = {
            f.name: getattr(self, f.name)[lo:hi] for f in dataclasses.fields(self) if f.name != "reasons"
        }
        return RequestTable(**columns, reasons=self.reasons)

    @property
    def ttft_s(self) -> FloatArray:
        return self.first_token_s - self.arrival_s

    @property
    def e2e_s(self) -> FloatArray:
        return self.completion_s - self.arrival_s

    @property
    def completed(self) -> npt.NDArray[np.bool_]:
        return ~np.isnan(self.completion_s) & (self.failure < 0)

    def reason_code(self, reason: str) -> int:
        if reason not in self.reasons:
            self.reasons.append(reason)
        return self.reasons.index(reason)

    def failed_reason(self, i: int) -> str | None:
        code = int(self.failure[i])
        return None if code < 0 else self.reasons[code]

    def set_instances(self, rows: IntArray, iids: npt.NDArray[np.int32]) -> None:
        """``iids[k]``: the instances of request ``rows[k]`` in order of first use, -1 padded."""
        width = iids.shape[1]
        if width > self.instances.shape[1]:
            wider = np.full((len(self), width), -1, dtype=np.int32)
            wider[:, : self.instances.shape[1]] = self.instances
            self.instances = wider
        self.instances[rows, :width] = iids

    def instances_of(self, i: int) -> list[int]:
        row = self.instances[i]
        return [int(x) for x in row[row >= 0]]


@dataclass(slots=True)
class InstanceRecord:
    """Everything measured about one instance (a TP group holding one model replica)."""

    iid: int
    devices: int
    """Accelerators in the instance (TP degree)."""
    busy_s: dict[str, float] = field(default_factory=dict)
    """Busy seconds per role of the iterations: "prefill", "decode", "mixed"."""
    idle_s: float = 0.0
    idle_s_by_role: dict[str, float] = field(default_factory=dict)
    """Idle seconds while in each role (``mixed``, ``prefill``, ``decode``)."""
    iterations: int = 0
    role_switches: int = 0
    batch_counts: list[int] = field(default_factory=list)
    """``batch_counts[b]``: iterations that ran ``b`` sequences (decodes plus prefill chunks)."""
    kv_capacity_bytes: float = 0.0
    kv_peak_primary_bytes: float = 0.0
    kv_peak_redundant_bytes: float = 0.0
    kv_peak_total_bytes: float = 0.0
    kv_mean_total_bytes: float = 0.0
    """Per device; time-weighted over the run's span (first arrival to last completion)."""
    tokens_generated: int = 0
    prefill_tokens: int = 0
    preemptions: int = 0
    kv_envelope: tuple[tuple[float, float, float], ...] = ()
    """For plots: (first time, peak primary, peak primary + redundant) KV bytes per device in each
    of at most ``timebins.BINS`` time bins."""
    role_stretches: tuple[tuple[float, float, str], ...] = ()
    """For plots: (start s, duration s, role), at the resolution of ``timebins.BINS`` bins."""
    batch_sizes: list[int] = field(default_factory=list)
    """Detail runs only: sequences in each iteration, in iteration order."""
    kv_timeline: list[tuple[float, float, float]] = field(default_factory=list)
    """Detail runs only: (time s, primary KV bytes, redundant KV bytes) per device at every change."""
    role_timeline: list[tuple[float, str]] = field(default_factory=list)
    """Detail runs only: (time s, role) at each role change."""

    @property
    def mean_batch_size(self) -> float | None:
        counts = np.asarray(self.batch_counts, dtype=np.int64)
        n = int(counts.sum())
        return int(np.dot(counts, np.arange(counts.size))) / n if n else None

    @property
    def max_batch_size(self) -> int | None:
        used = np.flatnonzero(np.asarray(self.batch_counts))
        return int(used[-1]) if used.size else None


@dataclass(slots=True)
class FaultRecord:
    """What simulated failures did (``scenario.faults``; see llmtwin/cluster/faults.py)."""

    down: list[tuple[int, float, float | None]] = field(default_factory=list)
    """(instance, down at s, back at s or None) of every failure."""
    affected: list[int] = field(default_factory=list)
    """Requests a failed instance held, or that were sent to one."""
    recomputed_kv_tokens: dict[int, int] = field(default_factory=dict)
    """Requests prefilled again because their KV was lost: the KV tokens lost."""
    redirected: list[int] = field(default_factory=list)
    """Disaggregated: requests whose intact KV went to another decode instance."""


@dataclass(slots=True)
class RunResult:
    """The outcome of one run of one scenario under one policy."""

    policy: str
    scenario: str
    seed: int
    table: RequestTable
    instances: list[InstanceRecord]
    end_s: float
    """Virtual time at which the last request finished."""
    tbt_gaps: StreamQuantiles
    """Every gap between consecutive tokens of every request (exact, or a sketch at scale)."""
    tbt_sum_s: float
    """Sum of those gaps (of the per-request sums, exactly rounded)."""
    hardware: str = ""
    model: str = ""
    tp: int = 1
    usd_per_device_hour: float | None = None
    stats: dict[str, float] = field(default_factory=dict)
    """Run statistics: wall_s, events, windows, messages."""
    faults: FaultRecord = field(default_factory=FaultRecord)
    """What simulated failures did (empty without faults)."""
    token_times: list[list[float]] | None = None
    """Detail runs only: every request's token times, by request id."""

    @property
    def requests(self) -> list[RequestRecord]:
        """One record per request, token times included (detail runs only)."""
        if self.token_times is None:
            raise ConfigurationError("per-request records need a run made with detail=True")
        t = self.table

        def opt(x: float) -> float | None:
            return None if np.isnan(x) else float(x)

        return [
            RequestRecord(
                rid=i,
                arrival_s=float(t.arrival_s[i]),
                prompt_tokens=int(t.prompt_tokens[i]),
                output_tokens=int(t.output_tokens[i]),
                generated_tokens=int(t.generated_tokens[i]),
                first_token_s=opt(t.first_token_s[i]),
                completion_s=opt(t.completion_s[i]),
                token_times_s=list(self.token_times[i]),
                instances=t.instances_of(i),
                preemptions=int(t.preemptions[i]),
                kv_bytes_moved=float(t.kv_bytes_moved[i]),
                failed_reason=t.failed_reason(i),
            )
            for i in range(len(t))
        ]
