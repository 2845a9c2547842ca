"""What a run produces: one record per request, one per instance, and the run's totals.

These records are the contract between the simulation (in-process or over NATS) and every
output (summary.json, requests.csv, instances.csv, plots). Times are virtual seconds.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field


@dataclass(slots=True)
class RequestRecord:
    """Everything measured about one request."""

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


@dataclass(slots=True)
class InstanceRecord:
    """Everything measured about one instance (a TP group holding one model replica)."""

    iid: int
    devices: int
    """Accelerators in the instance (TP degree)."""
    busy_s: dict[str, float] = field(default_factory=dict)
    """Busy seconds per role: "prefill", "decode", "mixed"."""
    idle_s: float = 0.0
    idle_s_by_role: dict[str, float] = field(default_factory=dict)
    """Idle seconds while in each role (``mixed``, ``prefill``, ``decode``; see role_timeline)."""
    iterations: int = 0
    role_switches: int = 0
    batch_sizes: list[int] = field(default_factory=list)
    """Sequences in each iteration (decodes plus prefill chunks), in iteration order."""
    kv_timeline: list[tuple[float, float, float]] = field(default_factory=list)
    """(time s, primary KV bytes, redundant KV bytes) per device, sampled wherever the batch or
    its step time changes."""
    role_timeline: list[tuple[float, str]] = field(default_factory=list)
    """(time s, role) at each role change."""
    kv_capacity_bytes: float = 0.0
    tokens_generated: int = 0
    prefill_tokens: int = 0
    preemptions: int = 0


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
    requests: list[RequestRecord]
    instances: list[InstanceRecord]
    end_s: float
    """Virtual time at which the last request finished."""
    hardware: str = ""
    model: str = ""
    tp: int = 1
    usd_per_device_hour: float | None = None
    stats: dict[str, float] = field(default_factory=dict)
    """Run statistics: wall_s, events, windows, messages."""
    faults: FaultRecord = field(default_factory=FaultRecord)
