"""Typed scenario, as loaded and validated from a TOML file (see llmtwin/scenario/loader.py).

Every field has a unit in its name or docstring. Policy parameters stay a plain mapping here;
each policy validates its own (see llmtwin/cluster/policies/).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class ClusterSpec:
    """The accelerators and how they form instances."""

    hardware: str
    """Hardware catalog name (or .toml path)."""
    instances: int
    """Model replicas; each is a TP group of ``tp`` devices."""
    tp: int = 1
    precision: str = "bf16"
    """One dtype, or ``weights=..,activations=..,kv=..``."""
    engine: str = "none"
    """Engine-overhead profile (llmtwin/data/engines/), ``none`` = pure device physics."""
    inter_instance_link: str = "auto"
    """Link carrying KV between instances: ``scale_up`` (NVLink/HCCS), ``scale_out`` (NIC), or
    ``auto`` (scale_up when two instances fit in one node, else scale_out)."""


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    """Arrivals and lengths of the requests."""

    arrival: str = "poisson"
    """``poisson``, ``gamma`` or ``trace`` (replay the trace's timestamps)."""
    rate_rps: float = 1.0
    """Mean arrival rate, requests/s (poisson, gamma)."""
    cv: float = 1.0
    """Coefficient of variation of inter-arrival times (gamma; 1 = Poisson)."""
    time_scale: float = 1.0
    """Trace replay: inter-arrival times are divided by this (2 = twice the load)."""
    lengths: str = "azure-conv"
    """``azure-conv``, ``azure-code`` (sampled from the Azure 2023 traces), ``trace`` (the rows of
    ``trace``: in order when its arrivals are replayed too, else sampled), ``fixed``, ``uniform``
    or ``lognormal``."""
    trace: str | None = None
    """Trace name (``azure-conv``, ``azure-code``) or CSV path, for ``arrival = "trace"``."""
    length_params: dict[str, float] = field(default_factory=dict)
    """Parameters of the length distribution, e.g. ``prompt_tokens``/``output_tokens`` (fixed),
    ``prompt_min``/``prompt_max``/``output_min``/``output_max`` (uniform),
    ``prompt_mean``/``prompt_sigma``/``output_mean``/``output_sigma`` (lognormal, of the log)."""
    requests: int | None = None
    """Number of requests; the run ends when all have finished."""
    duration_s: float | None = None
    """Arrival window, seconds: only requests arriving before it are generated. With ``requests``
    as well, generation stops at whichever limit is reached first."""
    max_prompt_tokens: int | None = None
    """Prompts longer than this are clipped (defaults to the model's context minus outputs)."""
    phases: tuple[WorkloadSpec, ...] = ()
    """A workload that changes over time: each phase is a workload of its own (arrivals, lengths,
    trace) lasting its ``duration_s``, starting where the previous one ended. When given, the
    top-level arrival and length fields are not used; ``requests`` and ``duration_s`` still cap
    the whole run."""


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """How every instance schedules its iterations (vLLM-style knobs)."""

    block_size_tokens: int = 16
    """Paged-KV block size."""
    watermark: float = 0.01
    """Fraction of KV blocks kept free when admitting new requests (avoids instant preemption)."""
    max_batch_seqs: int = 256
    """Most sequences in one iteration."""
    max_batch_tokens: int = 8192
    """Most tokens (prefill + decode) in one iteration."""
    chunked_prefill: bool = False
    """Split long prompts into chunks of at most the remaining token budget."""
    preserve: bool = False
    """Decode iterations use PRESERVE prefetch plans (needs TP > 1 to matter)."""
    shape_bucket: float = 0.02
    """Relative width of the iteration-time cache's context buckets (0 = exact, slow)."""


DEFAULT_SLO_TARGET = 0.9
"""Fraction of requests that must meet both SLOs for a load to count as served (SLO capacity)."""


@dataclass(frozen=True, slots=True)
class SLOSpec:
    """Service-level objectives for goodput."""

    ttft_s: float = 2.0
    """A request meets its TTFT SLO when first token - arrival <= this."""
    tbt_s: float = 0.2
    """A request meets its TBT SLO when its p99 gap between tokens is <= this (``tbt_stat``)."""
    tbt_stat: str = "p99"
    """Which per-request TBT statistic the SLO bounds: ``mean``, ``p90`` or ``p99``."""


@dataclass(frozen=True, slots=True)
class PolicySpec:
    """The serving policy and its parameters (validated by the policy itself)."""

    name: str = "colocated"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SweepSpec:
    """The loads a sweep over this scenario visits; a single run uses ``workload.rate_rps``."""

    rate_rps: tuple[float, ...] = ()
    """Arrival rates, requests/s, from light to heavy load (empty: no sweep suggested)."""


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """A simulated accelerator failure: instance ``instance`` goes down at ``at_s`` (virtual
    seconds) losing everything in its memory, and comes back empty at ``recover_s`` (never if
    unset). See docs/policies.md, "Faults", for what each policy does about it."""

    instance: int
    at_s: float
    recover_s: float | None = None


@dataclass(frozen=True, slots=True)
class Scenario:
    """One runnable experiment."""

    name: str
    model: str
    cluster: ClusterSpec
    workload: WorkloadSpec
    policy: PolicySpec = field(default_factory=PolicySpec)
    engine: EngineConfig = field(default_factory=EngineConfig)
    slo: SLOSpec = field(default_factory=SLOSpec)
    seed: int = 0
    description: str = ""
    routing_latency_s: float = 0.0
    """Virtual delay between the balancer deciding and an instance receiving the request."""
    policies: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per-policy parameter tables from the file (``[policies.accellm]`` ...), so that
    ``--policy P`` picks P's parameters."""
    sweep: SweepSpec = field(default_factory=SweepSpec)
    faults: tuple[FaultSpec, ...] = ()
    """Simulated accelerator failures (``--fault engine=3@30s,recover=90s``)."""
