"""The states a request's sequence takes inside one engine, and the roles an engine takes.

Entries are never changed in place once created (a state change makes a new entry), so an
engine snapshot is a shallow copy of its containers.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    """What an engine's iterations may compute."""

    MIXED = "mixed"
    """Prefills join the running decodes in one iteration (colocated, vLLM-style)."""
    PREFILL = "prefill"
    """Prefill-only iterations; a prefilled request's KV is held for the policy to move."""
    DECODE = "decode"
    """Decode-only iterations."""
    DOWN = "down"
    """Failed (a simulated fault): no iterations, no memory, until it recovers."""


@dataclass(slots=True)
class Job:
    """A request waiting for (the rest of) its prefill."""

    rid: int
    arrival_s: float
    prompt: int
    output: int
    """Tokens requested."""
    generated: int
    """Tokens produced before this prefill (> 0 for a recompute after a preemption)."""
    done: int = 0
    """Prefill tokens already computed by earlier chunks."""

    @property
    def total(self) -> int:
        """Tokens this prefill computes KV for: the prompt and every token generated so far."""
        return self.prompt + self.generated


@dataclass(slots=True)
class Run:
    """A decoding sequence. At iteration ``i`` it has produced ``g0 + i`` tokens and reads
    ``prompt + g0 + i`` KV tokens (its own new one included)."""

    rid: int
    arrival_s: float
    prompt: int
    output: int
    g0: int
    start_it: int
    """First iteration of its current run of tokens (the prefill that produced the previous
    token, or the first decode iteration)."""
    serial: int
    """Join number on this engine: the newest run is preempted first, stale heap entries skipped."""

    @property
    def a(self) -> int:
        """KV tokens at iteration ``i`` are ``a + i``."""
        return self.prompt + self.g0

    @property
    def finish_it(self) -> int:
        """The iteration that produces its last token."""
        return self.output - 1 - self.g0


@dataclass(frozen=True, slots=True)
class LostSeq:
    """A request whose KV a failure destroyed: what it had produced, and the KV lost."""

    rid: int
    arrival_s: float
    prompt: int
    output: int
    generated: int
    kv_tokens: int
    """KV tokens the failed instance had computed for it (what a recompute does again)."""


@dataclass(slots=True)
class Held:
    """A request whose KV is resident but which is not decoding here (prefilled and waiting to
    move, paused, or just received)."""

    rid: int
    arrival_s: float
    prompt: int
    output: int
    generated: int
    """Tokens produced so far; the KV covers ``prompt + generated - 1`` tokens."""

    @property
    def kv_tokens(self) -> int:
        return self.prompt + self.generated - 1
