"""The message bus as the services see it: publish, subscribe, request; NATS or in memory.

Services only use this small interface, so the same service code runs on a real nats-server
(:class:`~services.natsbus.NatsBus`, our own asyncio client) and on
:class:`services.memory.MemoryBus` in fast unit tests. Handlers of one subscription run one at a
time, in arrival order; different subscriptions do not wait for each other. A handler that is a
plain function runs inline, as soon as its message is parsed; a coroutine function is finished
in a task (:mod:`services.delivery`).
"""

from __future__ import annotations

from typing import Protocol

from services.delivery import Handler
from services.natsbus import NatsBus, connect

__all__ = ["Bus", "Handler", "Msg", "NatsBus", "Subscription", "connect"]


class Msg(Protocol):
    """A received message."""

    @property
    def subject(self) -> str: ...
    @property
    def data(self) -> bytes: ...
    @property
    def reply(self) -> str: ...


class Subscription(Protocol):
    async def unsubscribe(self, limit: int = 0) -> None: ...


class Bus(Protocol):
    """What a service needs from a message bus."""

    @property
    def max_payload(self) -> int:
        """Largest message the server accepts, bytes."""
        ...

    def publish_nowait(self, subject: str, data: bytes, reply: str = "") -> None:
        """Send now, without waiting (what the per-window handlers use)."""
        ...

    async def publish(self, subject: str, data: bytes, reply: str = "") -> None:
        """Send, then wait while the connection's send buffer is full."""
        ...

    async def subscribe(self, subject: str, handler: Handler, queue: str = "") -> Subscription: ...

    async def request(self, subject: str, data: bytes, timeout: float) -> bytes:
        """Reply payload; BusError on timeout or when nobody listens."""
        ...

    async def flush(self, timeout: float = 5.0) -> None:
        """Return once the server has every message published so far."""
        ...

    async def drain(self) -> None:
        """Let subscriptions finish what they have, then close; never raises."""
        ...
