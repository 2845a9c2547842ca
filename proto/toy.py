"""Messages of the toy components (``services/toy.py``) that exercise the transport.

They carry no physics: a ping-pong pair and a fan-out/fan-in set whose logs record the exact
order in which every message was handled, so any transport that reorders inputs shows up as a
different log.
"""

from __future__ import annotations

from typing import ClassVar

import msgspec

from llmtwin.sim.kernel import MessagePriority


class Ping(msgspec.Struct, frozen=True, tag="twin.v1.toy.ping"):
    """Ping -> pong: the n-th ball."""

    PRIORITY: ClassVar[MessagePriority] = MessagePriority.COMPLETION
    n: int


class Pong(msgspec.Struct, frozen=True, tag="twin.v1.toy.pong"):
    """Pong -> ping: the n-th ball back."""

    PRIORITY: ClassVar[MessagePriority] = MessagePriority.COMPLETION
    n: int


class Work(msgspec.Struct, frozen=True, tag="twin.v1.toy.work"):
    """Source -> worker: a job taking ``size_s`` virtual seconds."""

    PRIORITY: ClassVar[MessagePriority] = MessagePriority.TRANSFER
    job: int
    size_s: float


class Result(msgspec.Struct, frozen=True, tag="twin.v1.toy.result"):
    """Worker -> sink (or worker -> worker, a hand-over): a finished job."""

    PRIORITY: ClassVar[MessagePriority] = MessagePriority.FREE
    job: int
    worker: str
    value: float


class ToyExport(msgspec.Struct, frozen=True, tag="twin.v1.toy.export"):
    """A toy component's results: every message it handled, in handling order."""

    component: str
    log: list[str]
    """``"<time>|<src>|<seq>|<what>"`` per handled message."""
    last_s: float
    """Virtual time passed to ``finish``."""


TOY_TYPES: tuple[type[msgspec.Struct], ...] = (Ping, Pong, Work, Result, ToyExport)
