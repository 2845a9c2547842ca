"""The one lifecycle every service shares: start, ready, graceful stop with drain.

A service is an async context manager. ``start()`` subscribes (``on_start``), serves /metrics
and /healthz, announces itself (``Hello``) and starts its heartbeat; ``stop()`` unsubscribes,
lets the subclass wind down (``on_stop``), drains the bus connection and stops the endpoint.
Both are idempotent; :attr:`stopped` is set when the service is fully down. Handlers never
kill a subscription: a message that does not decode, or whose handler fails, is counted in
``twin_bus_rejected_total{reason}``, logged, and answered with an error when it was a request.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, ClassVar, Self

import msgspec
from prometheus_client import CollectorRegistry

from llmtwin import __version__
from llmtwin.errors import ProtocolError, TwinError
from proto import subjects
from proto.codec import Codec
from proto.control import Heartbeat, Hello, Reply
from services.bus import Bus, Msg, Subscription
from services.http import HttpEndpoint
from services.metrics import BusMetrics

log = logging.getLogger(__name__)


class Rejected(ProtocolError):
    """A message a handler refuses, with the ``twin_bus_rejected_total`` reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Service:
    """Base of every service: lifecycle, subscriptions with error accounting, heartbeat."""

    role: ClassVar[str] = "service"

    def __init__(
        self,
        name: str,
        bus: Bus,
        *,
        registry: CollectorRegistry,
        codec: Codec,
        heartbeat_s: float = 1.0,
        http_host: str = "127.0.0.1",
        http_port: int | None = 0,
    ) -> None:
        self.name = subjects.token(name, "service name")
        self.bus, self.codec, self.registry = bus, codec, registry
        self.metrics = BusMetrics(registry)
        self.heartbeat_s = heartbeat_s
        self.http = None if http_port is None else HttpEndpoint(registry, self.health, http_host, http_port)
        self.state = "new"
        self.ready = asyncio.Event()
        self.stopped = asyncio.Event()
        self._subs: list[Subscription] = []
        self._heartbeat: asyncio.Task[None] | None = None
        self._beats = 0

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
        """Unsubscribe, wind down, drain; idempotent (a second call waits for the first)."""
        if self.state in ("stopping", "stopped"):
            await self.stopped.wait()
            return
        self.state = "stopping"
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        for sub in self._subs:
            try:
                await sub.unsubscribe()
            except Exception as exc:  # a connection already closed has nothing to unsubscribe
                log.debug("%s: unsubscribe: %s", self.name, exc)
        self._subs.clear()
        await self.on_stop()
        await self.bus.drain()
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
        """Subclasses cancel their own work here (the bus is still connected)."""

    # -- messaging ---------------------------------------------------------------------------

    async def publish(self, subject: str, msg: msgspec.Struct | bytes) -> None:
        data = msg if isinstance(msg, bytes) else self.codec.encode(msg)
        await self.bus.publish(subject, data)
        self.metrics.messages_out.inc()

    def publish_nowait(self, subject: str, msg: msgspec.Struct | bytes) -> None:
        """Publish without waiting (from plain-function handlers on the per-window path)."""
        data = msg if isinstance(msg, bytes) else self.codec.encode(msg)
        self.bus.publish_nowait(subject, data)
        self.metrics.messages_out.inc()

    async def subscribe(
        self, subject: str, handler: Callable[[Msg], Awaitable[None] | None], queue: str = ""
    ) -> Subscription:
        """Subscribe with accounting: counted, and failures rejected instead of raised.

        ``handler`` may be a plain function (runs inline when the message arrives) or a
        coroutine function (finished in a task); see :mod:`services.delivery`.
        """

        def guarded(msg: Msg) -> Awaitable[None] | None:
            self.metrics.messages_in.inc()
            try:
                pending = handler(msg)
            except Exception as exc:
                self._failed(msg, exc)
                return None
            return None if pending is None else self._finish(pending, msg)

        sub = await self.bus.subscribe(subject, guarded, queue)
        self._subs.append(sub)
        return sub

    async def _finish(self, pending: Awaitable[None], msg: Msg) -> None:
        try:
            await pending
        except Exception as exc:
            self._failed(msg, exc)

    def _failed(self, msg: Msg, exc: Exception) -> None:
        if isinstance(exc, Rejected):
            self.reject(exc.reason, msg, str(exc))
        elif isinstance(exc, ProtocolError):
            self.reject("malformed", msg, str(exc))
        else:
            log.error("%s: handler for %s failed", self.name, msg.subject, exc_info=exc)
            self.reject("handler", msg, f"{type(exc).__name__}: {exc}")

    def reject(self, reason: str, msg: Msg, why: str) -> None:
        self.metrics.reject(reason)
        log.warning("%s: rejected a message on %s (%s): %s", self.name, msg.subject, reason, why)
        # A rejected request still gets an answer, so the caller never waits for a timeout.
        if msg.reply:
            try:
                self.bus.publish_nowait(msg.reply, self.codec.encode(Reply(False, why)))
            except TwinError as exc:  # disconnected: the caller's request times out instead
                log.debug("%s: reply failed: %s", self.name, exc)

    async def forget(self, sub: Subscription) -> None:
        """Unsubscribe one subscription made with :meth:`subscribe`."""
        if sub in self._subs:
            self._subs.remove(sub)
            await sub.unsubscribe()

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
            await asyncio.sleep(self.heartbeat_s)

    def health(self) -> dict[str, Any]:
        return {"service": self.name, "role": self.role, "status": self.state, "run": self.current_run()}
