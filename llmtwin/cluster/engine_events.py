"""What an engine did that its policy agent must act on: one small record per kind of event.

Each carries the virtual time it happened (an iteration end, or an iteration boundary) as
``time``; the agent dispatches on the type with ``match``. Records are never changed once made.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Finished:
    """A request produced its last token (``generated`` tokens in all); its KV is freed."""

    time: float
    rid: int
    generated: int


@dataclass(frozen=True, slots=True)
class Prefilled:
    """A prompt (or a recompute) finished in the prefill role: its KV is held for the policy."""

    time: float
    rid: int
    generated: int
    start_s: float
    """Start of the prefill iteration."""
    batch_tokens: int
    """Prompt tokens the whole iteration prefilled (their KV shares the link)."""


@dataclass(frozen=True, slots=True)
class Recompute:
    """Out of blocks outside the mixed role: the engine preempted this request and freed its KV,
    so it must be prefilled again (prompt + ``generated`` tokens) wherever the policy says."""

    time: float
    rid: int
    generated: int
    arrival_s: float
    prompt: int
    output: int


@dataclass(frozen=True, slots=True)
class Released:
    """Requests asked to leave (:meth:`EngineState.release`) stopped here and are held."""

    time: float
    rids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Evicted:
    """Redundant copies the engine dropped for room (AcceLLM)."""

    time: float
    rids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Drained:
    """The prefill role ran out of prompts (reported only when asked for: AcceLLM)."""

    time: float


EngineEvent = Finished | Prefilled | Recompute | Released | Evicted | Drained
