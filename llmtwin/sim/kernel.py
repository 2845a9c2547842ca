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
from enum import IntEnum
from typing import Any, ClassVar, Protocol

INF = math.inf


class MessagePriority(IntEnum):
    """Which of two messages for the same virtual instant is handled first (lower first).

    Why this order: memory is freed (releases, drops) before new work asks for it; role notices
    and completions before transfers; hand-overs and KV transfers land before new prompts; a
    component's own timers after what others told it; arrivals last.
    """

    FREE = 10
    """Memory given back: a KV release, a dropped replica, a partner's finished requests."""
    REBUILD = 11
    """AcceLLM: ask for redundant copies to be streamed again."""
    HANDOVER_ACK = 12
    """AcceLLM: which handed-over requests the receiver took."""
    ROLE = 15
    """AcceLLM: an instance took a new role."""
    COMPLETION = 20
    """A request or a prefill finished."""
    PREEMPTION = 25
    """A request was dropped for want of KV memory and must be prefilled again."""
    TRANSFER = 30
    """KV moved between instances, or requests handed over with their KV."""
    TIMER = 35
    """A component's own delayed decision (AcceLLM's switch-back timer)."""
    DISPATCH = 40
    """New work for an instance."""
    ARRIVAL = 60
    """A request reaches the cluster."""


class Message(Protocol):
    """What a component may send: any body that states its priority."""

    PRIORITY: ClassVar[MessagePriority]


@dataclass(frozen=True, slots=True)
class Envelope:
    """One message between components, stamped with the virtual time it takes effect."""

    time: float
    """Virtual delivery time, seconds (>= the sender's current time)."""
    priority: int
    """Tie-break within one instant; lower first (a :class:`MessagePriority`)."""
    src: str
    """Sending component id."""
    seq: int
    """Sender's sequence number, unique per sender, increasing."""
    dst: str
    """Receiving component id."""
    body: Any
    """The message itself (the cluster's are in :mod:`llmtwin.cluster.messages`)."""

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

    def send(self, dst: str, time: float, body: Message) -> None:
        """Send ``body`` to component ``dst``, to take effect at virtual time ``time`` (seconds)."""
        self.sent.append(Envelope(time, int(body.PRIORITY), self.src, self._seq, dst, body))
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

    def silent_kinds(self) -> tuple[type, ...]:
        """Message types this component takes without sending anything or moving its next
        event, when they are all it takes at an instant and it has no event of its own then.
        The services may step it later than the window it belongs to, at that window's time
        and with the same messages, since nothing else can depend on it before its next
        window (docs/architecture.md, "Silent steps"). The default, none, is always safe."""
        return ()

    def finish(self, now: float) -> None:  # noqa: B027 - optional hook, empty by default
        """Called once when the run ends at virtual time ``now`` (close accounting)."""

    @abstractmethod
    def export(self) -> object:
        """This component's part of the results, as plain data (called after :meth:`finish`)."""
