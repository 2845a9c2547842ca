"""The one lifecycle every service shares: start, ready, graceful stop.

A service is an async context manager built from its config object, a :class:`Bus` and the
component factories it knows.
``start()`` subscribes (``on_start``), serves /metrics and /healthz, announces itself
(``Hello``) and starts its heartbeat; ``stop()`` drains its subscriptions (what they received
is still handled), lets the subclass wind down (``on_stop``) and stops the endpoint. The bus
connection belongs to whoever opened it and outlives the service. Both are idempotent;
:attr:`stopped` is set when the service is fully down.

Handlers receive decoded messages (:meth:`Service.subscribe`, :meth:`Service.respond`) and never
kill a subscription: a message larger than its subject allows (checked before decoding), one
that does not decode, one that speaks for another service than its subject names, or whose
handler fails, is counted in ``twin_bus_rejected_total{reason}``, logged (at most one line per
reason per interval, with counts: :class:`~services.ratelog.RateLimitedLog`), and answered with
an error when it was a request. Operations the server refuses (permissions violations) are
counted in ``twin_bus_refused_total``; after a lost connection comes back the service says
hello again, so that the conductor re-sends what may have been lost.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
import uuid
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
from proto.limits import CONTROL_MAX_BYTES
from services.bus import Bus, Msg, Subscription
from services.config import ServiceConfig
from services.factory import Factory
from services.http import HttpEndpoint
from services.metrics import BusMetrics
from services.ratelog import RateLimitedLog

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
        self.boot = uuid.uuid4().hex[:16]
        """This process start (in Hello and Heartbeat): the conductor tells a restart by it."""
        self._subs: list[Subscription] = []
        self._heartbeat: asyncio.Task[None] | None = None
        self._beats = 0
        self._rejections = RateLimitedLog(log)
        self.setup()

    def setup(self) -> None:
        """Subclasses create their own state here (the end of construction)."""

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe, serve HTTP, say hello; idempotent."""
        if self.state != "new":
            return
        self.state = "starting"
        self.bus.listen(self)
        await self.on_start()
        if self.http is not None:
            await self.http.start()
            log.info("%s: /metrics and /healthz on http://%s:%d", self.name, self.http.host, self.http.port)
        await self.publish(subjects.hello(self.name), self.hello())
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
        self.bus.unlisten(self)
        self._rejections.flush()
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

    async def on_reconnected(self) -> None:
        """Subclasses re-send what may have been lost while the connection was down."""

    # -- the connection ----------------------------------------------------------------------

    async def bus_reconnected(self) -> None:
        """The connection is back (subscriptions restored): hello again, then the subclass."""
        self.metrics.reconnects.inc()
        if self.state != "ready":
            return
        try:
            await self.publish(subjects.hello(self.name), self.hello())
        except TwinError as exc:
            log.debug("%s: hello after reconnecting: %s", self.name, exc)
        await self.on_reconnected()

    def bus_refused(self, operation: str, detail: str) -> None:
        self.metrics.refused.labels(operation).inc()

    # -- messaging ---------------------------------------------------------------------------

    async def publish(self, subject: str, msg: msgspec.Struct | bytes) -> None:
        data = msg if isinstance(msg, bytes) else self.codec.encode(msg)
        await self.bus.publish(subject, data)
        self.metrics.messages_out.inc()

    @overload
    async def subscribe(
        self,
        subject: str,
        kind: type[T],
        handler: Callable[[T], Awaitable[None]],
        queue: str = "",
        *,
        max_bytes: int = CONTROL_MAX_BYTES,
        sender: Callable[[T], str] | None = None,
    ) -> Subscription: ...

    @overload
    async def subscribe(
        self,
        subject: str,
        kind: UnionType,
        handler: Callable[[Any], Awaitable[None]],
        queue: str = "",
        *,
        max_bytes: int = CONTROL_MAX_BYTES,
        sender: Callable[[Any], str] | None = None,
    ) -> Subscription: ...

    async def subscribe(
        self,
        subject: str,
        kind: Any,
        handler: Callable[[Any], Awaitable[None]],
        queue: str = "",
        *,
        max_bytes: int = CONTROL_MAX_BYTES,
        sender: Callable[[Any], str] | None = None,
    ) -> Subscription:
        """Subscribe ``handler`` to the messages of type ``kind`` (a tagged Struct or a union of
        them) on ``subject``, decoded before it is called; failures are counted, not raised.
        Messages over ``max_bytes`` are refused undecoded. With ``sender``, ``subject`` ends in a
        service name (``proto.subjects.ANY`` when subscribing) and the name ``sender`` reads from
        the message must be the subject's: nobody speaks for another."""

        async def on_msg(msg: Msg) -> None:
            self.metrics.messages_in.inc()
            try:
                await handler(self._decode(msg, kind, max_bytes, sender))
            except Exception as exc:
                await self._failed(msg, exc, answer=False)

        sub = await self.bus.subscribe(subject, on_msg, queue)
        self._subs.append(sub)
        return sub

    async def respond(
        self,
        subject: str,
        kind: type[T],
        handler: Callable[[T], Awaitable[msgspec.Struct | bytes]],
        queue: str = "",
    ) -> Subscription:
        """Answer requests of type ``kind`` on ``subject`` with what ``handler`` returns (a
        message, or one already encoded), or an error ``Reply``, so the caller never waits for
        a timeout."""

        async def on_msg(msg: Msg) -> None:
            self.metrics.messages_in.inc()
            try:
                answer = await handler(self._decode(msg, kind, CONTROL_MAX_BYTES, None))
            except Exception as exc:
                await self._failed(msg, exc, answer=True)
                return
            if msg.reply:
                await self.publish(msg.reply, answer)

        sub = await self.bus.subscribe(subject, on_msg, queue)
        self._subs.append(sub)
        return sub

    def _decode(self, msg: Msg, kind: Any, max_bytes: int, sender: Callable[[Any], str] | None) -> Any:
        size = len(msg.data)
        if size > max_bytes:
            raise Rejected("oversized", f"{size} bytes, more than the {max_bytes} this subject takes")
        decoded = self.codec.decode(msg.data, kind)
        if sender is not None:
            claimed, actual = sender(decoded), subjects.service_of(msg.subject)
            if claimed != actual:
                raise Rejected("forged", f"a message of {claimed!r} on the subject of {actual!r}")
        return decoded

    async def _failed(self, msg: Msg, exc: Exception, answer: bool) -> None:
        if isinstance(exc, Rejected):
            await self.reject(exc.reason, msg, str(exc), answer)
        elif isinstance(exc, ProtocolError):
            await self.reject("malformed", msg, str(exc), answer)
        else:
            log.error("%s: handler for %s failed", self.name, msg.subject, exc_info=exc)
            await self.reject("handler", msg, f"{type(exc).__name__}: {exc}", answer)

    async def reject(self, reason: str, msg: Msg, why: str, answer: bool = False) -> None:
        """Count and log (rate-limited) a refused message; answer it with an error when it was a
        request to a responder (``answer``). Pub/sub messages are never answered: a forged reply
        subject must not make a service publish where its sender wants."""
        self.metrics.reject(reason)
        self._rejections.warn(reason, f"{self.name}: rejected a message on {msg.subject} ({reason}): {why}")
        if answer and msg.reply:
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

    @property
    def http_port(self) -> int:
        """The port of its /metrics and /healthz endpoint (0: none)."""
        return self.http.port if self.http is not None else 0

    def hello(self) -> Hello:
        return Hello(
            self.name, self.role, os.getpid(), socket.gethostname(), self.http_port, __version__, self.boot
        )

    def current_run(self) -> str:
        """Run the service takes part in (empty when idle), reported in heartbeats."""
        return ""

    async def _beat(self) -> None:
        while True:
            self._beats += 1
            try:
                await self.publish(
                    subjects.heartbeat(self.name),
                    Heartbeat(
                        self.name, self._beats, self.current_run(), self.boot, self.role, self.http_port
                    ),
                )
            except Exception as exc:  # disconnected: the client reconnects, the next beat will tell
                log.debug("%s: heartbeat: %s", self.name, exc)
            await asyncio.sleep(self.cfg.heartbeat_s)

    def health(self) -> dict[str, Any]:
        return {"service": self.name, "role": self.role, "status": self.state, "run": self.current_run()}
