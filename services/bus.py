"""The message bus as the services see it: publish, subscribe, request; NATS or in memory.

Services only use this small interface, so the same service code runs on a real nats-server
(:class:`NatsBus`) and on :class:`services.memory.MemoryBus` in fast unit tests. Handlers of
one subscription run one at a time, in arrival order (as in nats-py); different subscriptions
run concurrently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import nats
import nats.errors
from nats.aio.client import Client

from llmtwin.errors import BusError

log = logging.getLogger(__name__)


class Msg(Protocol):
    """A received message (nats-py's ``Msg`` has these attributes)."""

    @property
    def subject(self) -> str: ...
    @property
    def data(self) -> bytes: ...
    @property
    def reply(self) -> str: ...


Handler = Callable[[Any], Awaitable[None]]
"""``async def handler(msg: Msg) -> None``."""


class Subscription(Protocol):
    async def unsubscribe(self, limit: int = 0) -> None: ...


class Bus(Protocol):
    """What a service needs from a message bus."""

    @property
    def max_payload(self) -> int:
        """Largest message the server accepts, bytes."""
        ...

    async def publish(self, subject: str, data: bytes, reply: str = "") -> None: ...

    async def subscribe(self, subject: str, handler: Handler, queue: str = "") -> Subscription: ...

    async def request(self, subject: str, data: bytes, timeout: float) -> bytes:
        """Reply payload; BusError on timeout or when nobody listens."""
        ...

    async def flush(self, timeout: float = 5.0) -> None:
        """Return once the server has every message published so far."""
        ...

    async def drain(self) -> None:
        """Let subscriptions finish what they have, then close."""
        ...


class NatsBus:
    """:class:`Bus` over a nats-py connection."""

    def __init__(self, nc: Client, closed: asyncio.Event | None = None) -> None:
        self.nc = nc
        self.closed = closed if closed is not None else asyncio.Event()
        """Set when the connection is closed for good (drained, or reconnects exhausted)."""

    @property
    def max_payload(self) -> int:
        return int(self.nc.max_payload)

    async def publish(self, subject: str, data: bytes, reply: str = "") -> None:
        await self.nc.publish(subject, data, reply=reply)

    async def subscribe(self, subject: str, handler: Handler, queue: str = "") -> Subscription:
        sub: Subscription = await self.nc.subscribe(subject, queue=queue, cb=handler)
        return sub

    async def request(self, subject: str, data: bytes, timeout: float) -> bytes:
        try:
            msg = await self.nc.request(subject, data, timeout=timeout)
        except nats.errors.NoRespondersError:
            raise BusError(f"nobody answers on {subject}") from None
        except nats.errors.TimeoutError:
            raise BusError(f"no answer on {subject} within {timeout:g} s") from None
        return bytes(msg.data)

    async def flush(self, timeout: float = 5.0) -> None:
        # nats-py keeps the future of a cancelled flush in its queue of PONG waiters; the PONG then
        # fails on it and kills the connection's read loop, after which every flush (and so drain)
        # times out. Shielded, a cancelled caller lets the PING get its PONG.
        inner = asyncio.ensure_future(self.nc.flush(timeout=math.ceil(timeout)))
        inner.add_done_callback(_retrieve)
        await asyncio.shield(inner)

    async def drain(self) -> None:
        if self.nc.is_closed:
            return
        # Already closing: nothing left to drain.
        with contextlib.suppress(nats.errors.ConnectionClosedError, nats.errors.ConnectionDrainingError):
            try:
                await self.nc.drain()
            except nats.errors.TimeoutError as exc:
                # Shutting down either way: a server too slow to answer must not turn into a crash.
                log.warning("nats: drain did not finish (%s); closing", exc)
                await self.nc.close()


def _retrieve(task: asyncio.Future[None]) -> None:
    """Done callback of a shielded flush whose caller went away: log instead of 'never retrieved'."""
    if not task.cancelled() and task.exception() is not None:
        log.debug("nats: flush: %s", task.exception())


async def connect(url: str, name: str, *, reconnect_attempts: int = 60) -> NatsBus:
    """A :class:`NatsBus` connected to ``url``; BusError (one line) when no server answers.

    nats-py reconnects by itself (every 0.5 s, ``reconnect_attempts`` times) and re-subscribes,
    which is what keeps services alive across a NATS server restart.
    """

    async def on_error(exc: Exception) -> None:
        log.warning("nats: %s", exc)

    async def on_disconnect() -> None:
        log.info("nats: disconnected from %s", url)

    async def on_reconnect() -> None:
        log.warning("nats: reconnected to %s", url)

    closed = asyncio.Event()

    async def on_closed() -> None:
        closed.set()

    try:
        nc = await nats.connect(
            url,
            name=name,
            error_cb=on_error,
            disconnected_cb=on_disconnect,
            reconnected_cb=on_reconnect,
            closed_cb=on_closed,
            reconnect_time_wait=0.5,
            max_reconnect_attempts=reconnect_attempts,
            connect_timeout=5,
        )
    except (OSError, nats.errors.NoServersError, nats.errors.Error) as exc:
        raise BusError(f"cannot connect to NATS at {url}: {exc or type(exc).__name__}") from None
    return NatsBus(nc, closed)
