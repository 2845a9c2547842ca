"""The one lifecycle every service shares: start, ready, graceful stop.

A service is an async context manager built from its config object, a :class:`Bus` and the
component factories it knows.
``start()`` subscribes (``on_start``), serves /metrics and /healthz, announces itself
(``Hello``) and starts its heartbeat; ``stop()`` drains its subscriptions (what they received
is still handled), lets the subclass wind down (``on_stop``) and stops the endpoint. The bus
connection belongs to whoever opened it and outlives the service. Both are idempotent;
:attr:`stopped` is set when the service is fully down.

Handlers receive decoded messages (:meth:`Service.subscribe`, :meth:`Service.respond`) and never
kill a subscription: a message that does not decode, or whose handler fails, is counted in
``twin_bus_rejected_total{reason}``, logged, and answered with an error when it was a request.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType, UnionType
from typing import Any, Generic, Self, TypeVar, overload

import msgspec
from prometheus_client import CollectorRegistry

from llmtwin import __version__
from llmtwin.errors import ProtocolError, TwinError
from proto import subjects
from proto.codec import Codec
from proto.control import Heartbeat, Hello, Reply
from services.bus import Bus, Msg, Subscription
from services.config import ServiceConfig
from services.factory import Factory
from services.http import HttpEndpoint
from services.metrics import BusMetrics

log = logging.getLogger(__name__)

T = TypeVar("T")
C = TypeVar("C", bound=ServiceConfig)


class Rejected(ProtocolError):
    """A message a handler refuses, with the ``twin_bus_rejected_total`` reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Service(Generic[C]):
    """Base of every service: lifecycle, typed subscriptions with error accounting, heartbeat.

    Subclasses create their own state in :meth:`setup`; every service is built the same way,
    ``Kind(cfg, bus, factories)``."""

    def __init__(
        self,
        cfg: C,
        bus: Bus,
        factories: Mapping[str, Factory],
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.cfg = cfg
        self.name, self.role = cfg.service_name, cfg.role
        self.bus = bus
        self.factories = factories
        """The component factories it knows, by the name a ``RunSpec`` gives."""
        self.codec = Codec(itertools.chain.from_iterable(f.body_types() for f in factories.values()))
        self.registry = registry or CollectorRegistry()
        self.metrics = BusMetrics(self.registry)
        self.http = (
            None
            if cfg.http_port < 0
            else HttpEndpoint(self.registry, self.health, cfg.http_host, cfg.http_port)
        )
        self.state = "new"
        self.ready = asyncio.Event()
        self.stopped = asyncio.Event()
        self._subs: list[Subscription] = []
        self._heartbeat: asyncio.Task[None] | None = None
        self._beats = 0
        self.setup()

    def setup(self) -> None:
        """Subclasses create their own state here (the end of construction)."""

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe, serve HTTP, say hello; idempotent."""
        if self.state != "new":
            return
        self.state = "starting"
        await self.on_start()
        if self.http is not None:
            await self.http.start()
            log.info("%s: /metrics and /healthz on http://%s:%d", self.name, self.http.host, self.http.port)
        await self.publish(subjects.hello(), self.hello())
        self._heartbeat = asyncio.get_running_loop().create_task(self._beat())
        self.state = "ready"
        self.metrics.up.set(1)
        self.ready.set()

    async def stop(self) -> None:
        """Drain the subscriptions, wind down; idempotent (a second call waits for the first)."""
        if self.state in ("stopping", "stopped"):
            await self.stopped.wait()
            return
        self.state = "stopping"
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        subs, self._subs = self._subs, []
        for sub in subs:
            await sub.drain()
        await self.on_stop()
        if self.http is not None:
            await self.http.stop()
        self.metrics.up.set(0)
        self.state = "stopped"
        self.stopped.set()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def on_start(self) -> None:
        """Subclasses subscribe here."""

    async def on_stop(self) -> None:
        """Subclasses cancel their own work here (the bus is still open)."""

    # -- messaging ---------------------------------------------------------------------------

    async def publish(self, subject: str, msg: msgspec.Struct | bytes) -> None:
        data = msg if isinstance(msg, bytes) else self.codec.encode(msg)
        await self.bus.publish(subject, data)
        self.metrics.messages_out.inc()

    @overload
    async def subscribe(
        self, subject: str, kind: type[T], handler: Callable[[T], Awaitable[None]], queue: str = ""
    ) -> Subscription: ...

    @overload
    async def subscribe(
        self, subject: str, kind: UnionType, handler: Callable[[Any], Awaitable[None]], queue: str = ""
    ) -> Subscription: ...

    async def subscribe(
        self, subject: str, kind: Any, handler: Callable[[Any], Awaitable[None]], queue: str = ""
    ) -> Subscription:
        """Subscribe ``handler`` to the messages of type ``kind`` (a tagged Struct or a union of
        them) on ``subject``, decoded before it is called; failures are counted, not raised."""

        async def on_msg(msg: Msg) -> None:
            self.metrics.messages_in.inc()
            try:
                await handler(self.codec.decode(msg.data, kind))
            except Exception as exc:
                await self._failed(msg, exc)

        sub = await self.bus.subscribe(subject, on_msg, queue)
        self._subs.append(sub)
        return sub

    async def respond(
        self,
        subject: str,
        kind: type[T],
        handler: Callable[[T], Awaitable[msgspec.Struct]],
        queue: str = "",
    ) -> Subscription:
        """Answer requests of type ``kind`` on ``subject`` with what ``handler`` returns."""

        async def on_msg(msg: Msg) -> None:
            self.metrics.messages_in.inc()
            try:
                answer = await handler(self.codec.decode(msg.data, kind))
            except Exception as exc:
                await self._failed(msg, exc)
                return
            if msg.reply:
                await self.publish(msg.reply, answer)

        sub = await self.bus.subscribe(subject, on_msg, queue)
        self._subs.append(sub)
        return sub

    async def _failed(self, msg: Msg, exc: Exception) -> None:
        if isinstance(exc, Rejected):
            await self.reject(exc.reason, msg, str(exc))
        elif isinstance(exc, ProtocolError):
            await self.reject("malformed", msg, str(exc))
        else:
            log.error("%s: handler for %s failed", self.name, msg.subject, exc_info=exc)
            await self.reject("handler", msg, f"{type(exc).__name__}: {exc}")

    async def reject(self, reason: str, msg: Msg, why: str) -> None:
        self.metrics.reject(reason)
        log.warning("%s: rejected a message on %s (%s): %s", self.name, msg.subject, reason, why)
        # A rejected request still gets an answer, so the caller never waits for a timeout.
        if msg.reply:
            try:
                await self.bus.publish(msg.reply, self.codec.encode(Reply(False, why)))
            except TwinError as exc:  # disconnected: the caller's request times out instead
                log.debug("%s: reply failed: %s", self.name, exc)

    async def forget(self, sub: Subscription) -> None:
        """Drain one subscription made with :meth:`subscribe`."""
        if sub in self._subs:
            self._subs.remove(sub)
            await sub.drain()

    # -- presence ----------------------------------------------------------------------------

    def hello(self) -> Hello:
        port = self.http.port if self.http is not None else 0
        return Hello(self.name, self.role, os.getpid(), socket.gethostname(), port, __version__)

    def current_run(self) -> str:
        """Run the service takes part in (empty when idle), reported in heartbeats."""
        return ""

    async def _beat(self) -> None:
        while True:
            self._beats += 1
            try:
                await self.publish(
                    subjects.heartbeat(), Heartbeat(self.name, self._beats, self.current_run())
                )
            except Exception as exc:  # disconnected: the client reconnects, the next beat will tell
                log.debug("%s: heartbeat: %s", self.name, exc)
            await asyncio.sleep(self.cfg.heartbeat_s)

    def health(self) -> dict[str, Any]:
        return {"service": self.name, "role": self.role, "status": self.state, "run": self.current_run()}
