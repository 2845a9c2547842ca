"""One request as the workload generates it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RequestSpec:
    """A request before it reaches the cluster."""

    rid: int
    """Request id, 0..n-1 in arrival order."""
    arrival_s: float
    """Virtual arrival time, seconds since the start of the run."""
    prompt_tokens: int
    output_tokens: int
    """Tokens to generate, including the first one (produced by the prefill)."""
