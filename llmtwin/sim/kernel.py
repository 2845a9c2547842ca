"""Envelopes, the component interface and the one event-ordering rule.

Event-ordering rule (the only one in the twin):
    Messages are handled in the order of the key ``(time, priority, src, seq)``: virtual time
    first, then the message type's priority (lower first), then the sending component's id,
    then the sender's own sequence number. Never by arrival order. A component that steps at
    time T first handles its inbox for T in that order, then its own internal events at T.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

INF = math.inf


@dataclass(frozen=True, slots=True)
class Envelope:
    """One message between components, stamped with the virtual time it takes effect."""

    time: float
    """Virtual delivery time, seconds (>= the sender's current time)."""
    priority: int
    """Tie-break within one instant; lower first (see each message type's ``PRIORITY``)."""
    src: str
    """Sending component id."""
    seq: int
    """Sender's sequence number, unique per sender, increasing."""
    dst: str
    """Receiving component id."""
    body: Any
    """The message itself: a proto struct (see ``proto/messages.py``)."""

    @property
    def key(self) -> tuple[float, int, str, int]:
        return (self.time, self.priority, self.src, self.seq)


def order(envelopes: Sequence[Envelope]) -> list[Envelope]:
    """Envelopes in handling order (the event-ordering rule above)."""
    return sorted(envelopes, key=lambda e: e.key)


@dataclass(slots=True)
class Outbox:
    """Collects what a component sends during one step, numbering messages per sender."""

    src: str
    _seq: int = 0
    sent: list[Envelope] = field(default_factory=list)

    def send(self, dst: str, time: float, body: Any, priority: int | None = None) -> None:
        prio = priority if priority is not None else int(getattr(body, "PRIORITY", 50))
        self.sent.append(Envelope(time, prio, self.src, self._seq, dst, body))
        self._seq += 1

    def drain(self) -> list[Envelope]:
        out, self.sent = self.sent, []
        return out


class Component(ABC):
    """A piece of the twin's state that changes only in :meth:`step`.

    Contract (what makes runs transport-independent):
      * :meth:`next_time` is a pure function of the component's state: the virtual time of its
        next internal event, or ``INF``.
      * :meth:`step` is called with ``now`` equal to the smallest of its next internal event and
        its earliest undelivered message, with every message for times <= ``now`` in ``inbox``,
        already in handling order. It returns (through its outbox) messages stamped >= ``now``.
      * No wall-clock time, no I/O, no randomness except generators seeded from the scenario.
    """

    def __init__(self, cid: str) -> None:
        self.id = cid
        self.outbox = Outbox(cid)

    @abstractmethod
    def next_time(self) -> float:
        """Virtual time of the next internal event (``INF`` when idle)."""

    @abstractmethod
    def step(self, now: float, inbox: list[Envelope]) -> None:
        """Handle ``inbox`` (messages for times <= now) and internal events at ``now``."""

    def finish(self, now: float) -> None:  # noqa: B027 - optional hook, empty by default
        """Called once when the run ends at virtual time ``now`` (close accounting)."""
