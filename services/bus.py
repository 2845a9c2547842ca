"""The message bus as the services see it: the :class:`Bus` interface and what it hands out.

Services only use :class:`Bus`: publish, subscribe (a coroutine handler; one subscription's
messages are handled one at a time, in arrival order; different subscriptions do not wait for
each other), request, flush, close. Its implementation on a nats-py connection is
:class:`~services.nats_bus.NatsBus` (``services/nats_bus.py``, the only module that knows
NATS); the tests run the same services on an in-memory bus with the same semantics
(``tests/memory_bus.py``).

Ownership: whoever opens a connection closes it (``serve`` in :mod:`services.main`, ``llmtwin
up``, the test harness). A service drains its own subscriptions when it stops and leaves the
connection alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol

from llmtwin.errors import BusError


class Msg(Protocol):
    """A received message."""

    @property
    def subject(self) -> str: ...
    @property
    def data(self) -> bytes: ...
    @property
    def reply(self) -> str: ...


Handler = Callable[[Msg], Awaitable[None]]
"""``await handler(msg)``; an exception is logged and never ends the subscription."""


class BusListener(Protocol):
    """What a service hears about its connection (:meth:`Bus.listen`)."""

    async def bus_reconnected(self) -> None:
        """The connection is back after a loss (subscriptions restored): say hello again,
        re-send what may have been lost."""
        ...

    def bus_refused(self, operation: str, detail: str) -> None:
        """The server refused one of our operations (``publish`` or ``subscribe``: a
        permissions violation)."""
        ...


class Subscription(Protocol):
    async def drain(self) -> None:
        """Stop receiving; return once every message received before is handled."""
        ...


class Bus(Protocol):
    """What a service needs from a message bus."""

    @property
    def max_payload(self) -> int:
        """Largest message the server accepts, bytes."""
        ...

    @property
    def closed(self) -> asyncio.Event:
        """Set once the connection is closed for good (closed by its owner, or reconnection gave up)."""
        ...

    def listen(self, listener: BusListener) -> None:
        """Tell ``listener`` about reconnections and refused operations (until :meth:`unlisten`)."""
        ...

    def unlisten(self, listener: BusListener) -> None: ...

    async def publish(self, subject: str, data: bytes, reply: str = "") -> None: ...

    async def subscribe(self, subject: str, handler: Handler, queue: str = "") -> Subscription: ...

    async def request(self, subject: str, data: bytes, timeout_s: float) -> bytes:
        """The reply's payload; BusError when nobody listens or nobody answers in time."""
        ...

    async def flush(self, timeout_s: float = 5.0) -> None:
        """Return once the server has every message published so far; ServerNotAnswering if it
        does not say so within ``timeout_s``."""
        ...

    async def close(self) -> None:
        """Drain (subscriptions handle what they received, publishes reach the server), then
        close; never raises. Only for whoever opened the connection."""
        ...


class ServerNotAnswering(BusError):
    """The NATS server did not answer a PING in time: the server is stuck, not (only) a peer."""
