"""A NATS client on an asyncio protocol: the services' connection to nats-server.

Why not nats-py: per message it hops through a read task, a queue and a task per
subscription on the way in, and a flusher task on the way out; a two-process ping-pong through
nats-server took 150-170 us with it and 40 us with this client (uvloop), and a twin window is
one such round trip (docs/architecture.md, "Cost and measured speed"). Here bytes are parsed
where they arrive (``data_received``), a plain-function handler runs right there
(:mod:`services.delivery`), and a publish is one ``transport.write``.

What it does of the protocol: CONNECT/INFO, PUB, SUB (queue groups), UNSUB, PING/PONG both
ways, HMSG (for the 503 "no responders" status), request/reply over one wildcard inbox
subscription, flush (PING, wait for PONG), drain. On a lost connection it reconnects every
``reconnect_wait_s`` up to ``reconnect_attempts`` times, subscribes again, and sends what was
published meanwhile (up to ``pending_limit_bytes``); messages in flight are lost, as with any
NATS core client. Plain TCP only (``nats://host:port``, optional ``user:password@``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import socket
from collections import deque
from typing import Any, NamedTuple, cast
from urllib.parse import unquote, urlsplit

from llmtwin import __version__
from llmtwin.errors import BusError
from services import natsproto
from services.delivery import Delivery, Handler

log = logging.getLogger(__name__)

DEFAULT_MAX_PAYLOAD = 1 << 20
"""Bytes; replaced by the server's INFO."""


class NoResponders(BusError):
    """The server says nobody subscribes to a request's subject."""


class NatsMsg(NamedTuple):
    """A received message (:class:`services.bus.Msg`)."""

    subject: str
    data: bytes
    reply: str


class NatsSubscription:
    """One SUB; :meth:`unsubscribe` stops deliveries (what was received is still handled)."""

    __slots__ = ("bus", "delivery", "queue", "sid", "subject")

    def __init__(self, bus: NatsBus, sid: int, subject: str, queue: str, handler: Handler) -> None:
        self.bus, self.sid, self.subject, self.queue = bus, sid, subject, queue
        self.delivery: Delivery[NatsMsg] = Delivery(handler, subject)

    async def unsubscribe(self, limit: int = 0) -> None:
        self.bus.forget(self)


class _Wire(asyncio.Protocol):
    """The asyncio side of one TCP connection: bytes to the parser, events to the client."""

    def __init__(self, bus: NatsBus) -> None:
        self.bus = bus
        self.parser = natsproto.Parser(bus)
        self.transport: asyncio.Transport | None = None
        self.writable = asyncio.get_running_loop().create_future()
        self.writable.set_result(None)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not an asyncio subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed(data)
        except natsproto.NatsProtocolError as exc:
            log.error("nats: %s; closing the connection", exc)
            if self.transport is not None:
                self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.resume_writing()  # a publisher waiting for buffer space must not wait forever
        self.bus.lost(self, exc)

    def pause_writing(self) -> None:
        self.writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if not self.writable.done():
            self.writable.set_result(None)


class NatsBus:
    """:class:`services.bus.Bus` over its own NATS connection (see the module docstring)."""

    def __init__(
        self,
        url: str,
        name: str,
        *,
        reconnect_attempts: int = 60,
        reconnect_wait_s: float = 0.5,
        connect_timeout_s: float = 5.0,
        ping_interval_s: float = 120.0,
        max_outstanding_pings: int = 2,
        pending_limit_bytes: int = 8 << 20,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme != "nats" or not parts.hostname:
            raise BusError(f"unsupported NATS URL {url!r}: expected nats://host:port")
        self.url, self.name = url, name
        self.host, self.port = parts.hostname, parts.port or 4222
        self.user = unquote(parts.username) if parts.username else ""
        self.password = unquote(parts.password) if parts.password else ""
        self.reconnect_attempts = reconnect_attempts
        self.reconnect_wait_s = reconnect_wait_s
        self.connect_timeout_s = connect_timeout_s
        self.ping_interval_s = ping_interval_s
        self.max_outstanding_pings = max_outstanding_pings
        self.pending_limit_bytes = pending_limit_bytes
        self.max_payload = DEFAULT_MAX_PAYLOAD
        self.status = "new"
        """new -> connected <-> reconnecting -> draining -> closed."""
        self.closed = asyncio.Event()
        """Set when the connection is closed for good (drained, or reconnects exhausted)."""
        self.info: dict[str, Any] = {}
        self._wire: _Wire | None = None
        self._transport: asyncio.Transport | None = None
        """Set only while connected and past the handshake: user writes go straight to it."""
        self._pending: list[bytes] = []
        """Writes made while not connected, sent after the next handshake."""
        self._pending_bytes = 0
        self._pongs: deque[asyncio.Future[None] | None] = deque()
        """One entry per PING in flight, in order (None: a keep-alive PING nobody waits for)."""
        self._outstanding = 0
        self._handshake: list[asyncio.Future[None]] = []
        """While connecting: the futures of the INFO and of the first PONG (an -ERR fails them)."""
        self._sids = itertools.count(1)
        self._subs: dict[int, NatsSubscription] = {}
        self._subjects: dict[str, bytes] = {}
        """Validated subjects as bytes (the hot ones repeat every window)."""
        self._inbox = f"_INBOX.{secrets.token_hex(11)}"
        self._mux: NatsSubscription | None = None
        """The subscription to ``<inbox>.*`` that receives every reply to :meth:`request`."""
        self._requests: dict[str, asyncio.Future[bytes]] = {}
        self._tokens = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()

    # -- connecting ------------------------------------------------------------------------------

    async def connect(self) -> None:
        """The first connection; BusError (one line) when no server answers."""
        try:
            await self._open()
        except (OSError, TimeoutError, BusError) as exc:
            self.status = "closed"
            self.closed.set()
            raise BusError(f"cannot connect to NATS at {self.url}: {exc or type(exc).__name__}") from None
        self._spawn(self._keepalive())

    async def _open(self) -> None:
        """Connect, handshake (INFO, CONNECT, PING/PONG), subscribe again, send what waited."""
        loop = asyncio.get_running_loop()
        info: asyncio.Future[None] = loop.create_future()
        pong: asyncio.Future[None] = loop.create_future()
        self._handshake = [info, pong]
        try:
            transport, wire = await asyncio.wait_for(
                loop.create_connection(lambda: _Wire(self), self.host, self.port), self.connect_timeout_s
            )
        except BaseException:
            self._handshake = []
            raise
        self._wire = wire
        try:
            await asyncio.wait_for(asyncio.shield(info), self.connect_timeout_s)
            options: dict[str, Any] = {
                "verbose": False,
                "pedantic": False,
                "name": self.name,
                "lang": "python-llmtwin",
                "version": __version__,
                "protocol": 1,
                "headers": True,
                "no_responders": True,
            }
            if self.user:
                options |= {"user": self.user, "pass": self.password}
            transport.write(natsproto.connect_line(options) + natsproto.PING)
            self._pongs.append(pong)
            await asyncio.wait_for(asyncio.shield(pong), self.connect_timeout_s)
        except BaseException:
            transport.abort()
            raise
        finally:
            self._handshake = []
        out = [natsproto.sub_line(self._subject(s.subject), s.queue, sid) for sid, s in self._subs.items()]
        out += self._pending
        self._pending, self._pending_bytes = [], 0
        if out:
            transport.write(b"".join(out))
        self._transport = transport
        self._outstanding = 0
        self.status = "connected"

    def lost(self, wire: _Wire, exc: Exception | None) -> None:
        """The connection closed (called by the protocol)."""
        if wire is not self._wire:
            return
        self._wire = self._transport = None
        self._fail_pongs(BusError(f"connection to {self.url} lost"))
        self._fail_handshake(BusError(f"connection to {self.url} closed during the handshake"))
        if self.status in ("connected", "draining") and not self.closed.is_set():
            if self.status == "draining":
                self._finish_close()
                return
            log.info("nats: disconnected from %s (%s)", self.url, exc or "closed by the server")
            self.status = "reconnecting"
            self._spawn(self._reconnect())

    async def _reconnect(self) -> None:
        for _ in range(self.reconnect_attempts):
            await asyncio.sleep(self.reconnect_wait_s)
            if self.status != "reconnecting":
                return
            try:
                await self._open()
            except (OSError, TimeoutError, BusError) as exc:
                log.debug("nats: reconnect to %s failed: %s", self.url, exc)
                continue
            log.warning("nats: reconnected to %s", self.url)
            return
        log.error("nats: gave up reconnecting to %s after %d attempts", self.url, self.reconnect_attempts)
        self._finish_close()

    async def _keepalive(self) -> None:
        """PING every ``ping_interval_s``; too many unanswered: the connection is stale, reconnect."""
        while not self.closed.is_set():
            await asyncio.sleep(self.ping_interval_s)
            if self._transport is None:
                continue
            self._outstanding += 1
            if self._outstanding > self.max_outstanding_pings:
                log.warning("nats: %s stopped answering PINGs; reconnecting", self.url)
                self._transport.abort()
                continue
            self._pongs.append(None)
            self._transport.write(natsproto.PING)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- what the parser calls (natsproto.Receiver) ------------------------------------------------

    def on_msg(self, sid: int, subject: str, reply: str, data: bytes, status: int) -> None:
        sub = self._subs.get(sid)
        if sub is None:
            return  # unsubscribed while the message was on its way
        if sub is self._mux:
            self._on_reply(subject, data, status)
        elif not status:  # status-only messages (no responders, flow control) concern requests only
            sub.delivery.deliver(NatsMsg(subject, data, reply))

    def on_ping(self) -> None:
        wire = self._wire
        if wire is not None and wire.transport is not None:
            wire.transport.write(natsproto.PONG)

    def on_pong(self) -> None:
        self._outstanding = 0
        if self._pongs:
            waiter = self._pongs.popleft()
            if waiter is not None and not waiter.done():  # a cancelled flush is skipped, not failed on
                waiter.set_result(None)

    def on_info(self, info: dict[str, Any]) -> None:
        self.info = info
        self.max_payload = int(info.get("max_payload", self.max_payload))
        if self._handshake and not self._handshake[0].done():
            self._handshake[0].set_result(None)

    def on_err(self, text: str) -> None:
        if self._handshake:
            self._fail_handshake(BusError(f"nats-server refused the connection: {text}"))
        else:
            log.warning("nats: server error: %s", text)

    def _fail_handshake(self, exc: BusError) -> None:
        for waiter in self._handshake:
            if not waiter.done():
                waiter.set_exception(exc)

    # -- the Bus interface -----------------------------------------------------------------------

    def _subject(self, subject: str) -> bytes:
        raw = self._subjects.get(subject)
        if raw is None:
            raw = natsproto.check_subject(subject)
            if len(self._subjects) > 4096:
                self._subjects.clear()
            self._subjects[subject] = raw
        return raw

    def _write(self, data: bytes) -> None:
        transport = self._transport
        if transport is not None:
            transport.write(data)
        elif self.status in ("new", "reconnecting"):
            if self._pending_bytes + len(data) > self.pending_limit_bytes:
                raise BusError(
                    f"not connected to {self.url}, and {self.pending_limit_bytes} bytes wait already"
                )
            self._pending.append(data)
            self._pending_bytes += len(data)
        else:
            raise BusError(f"connection {self.name!r} to {self.url} is {self.status}")

    def publish_nowait(self, subject: str, data: bytes, reply: str = "") -> None:
        if len(data) > self.max_payload:
            raise BusError(
                f"message of {len(data)} bytes on {subject} exceeds max_payload ({self.max_payload})"
            )
        rep = natsproto.check_subject(reply) if reply else b""
        self._write(natsproto.pub_line(self._subject(subject), rep, data))

    async def publish(self, subject: str, data: bytes, reply: str = "") -> None:
        self.publish_nowait(subject, data, reply)
        wire = self._wire
        if wire is not None and not wire.writable.done():
            await wire.writable  # the socket's buffer is full: wait until it drains

    async def subscribe(self, subject: str, handler: Handler, queue: str = "") -> NatsSubscription:
        if self.status in ("draining", "closed"):
            raise BusError(f"connection {self.name!r} is {self.status}")
        raw = self._subject(subject)
        if queue:
            natsproto.check_subject(queue)
        sub = NatsSubscription(self, next(self._sids), subject, queue, handler)
        self._subs[sub.sid] = sub
        if self._transport is not None:  # else the next handshake subscribes it
            self._transport.write(natsproto.sub_line(raw, queue, sub.sid))
        return sub

    def forget(self, sub: NatsSubscription) -> None:
        """Unsubscribe: no more deliveries; what was received is still handled."""
        if self._subs.pop(sub.sid, None) is None:
            return
        sub.delivery.open = False
        if self._transport is not None:
            self._transport.write(natsproto.unsub_line(sub.sid))

    async def request(self, subject: str, data: bytes, timeout: float) -> bytes:
        if self._mux is None:
            self._mux = await self.subscribe(f"{self._inbox}.*", _unused)
        token = str(next(self._tokens))
        answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._requests[token] = answer
        try:
            self.publish_nowait(subject, data, f"{self._inbox}.{token}")
            return await asyncio.wait_for(answer, timeout)
        except NoResponders:
            raise BusError(f"nobody answers on {subject}") from None
        except TimeoutError:
            raise BusError(f"no answer on {subject} within {timeout:g} s") from None
        finally:
            self._requests.pop(token, None)

    def _on_reply(self, subject: str, data: bytes, status: int) -> None:
        answer = self._requests.pop(subject.rsplit(".", 1)[-1], None)
        if answer is None or answer.done():
            return
        if status == natsproto.NO_RESPONDERS:
            answer.set_exception(NoResponders("nobody answers"))
        else:
            answer.set_result(data)

    async def flush(self, timeout: float = 5.0) -> None:
        """Return once the server has everything written so far (a PING answered)."""
        if self._transport is None:
            raise BusError(f"connection {self.name!r} to {self.url} is {self.status}")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pongs.append(done)
        self._transport.write(natsproto.PING)
        try:
            await asyncio.wait_for(done, timeout)
        except TimeoutError:
            raise BusError(f"nats-server did not answer a flush within {timeout:g} s") from None

    async def drain(self, timeout: float = 10.0) -> None:
        """Unsubscribe, handle what was received, send what was published, close."""
        if self.status in ("draining", "closed"):
            await self.closed.wait()
            return
        connected = self._transport is not None
        self.status = "draining"
        subs = list(self._subs.values())
        if connected:
            assert self._transport is not None
            self._transport.write(b"".join(natsproto.unsub_line(s.sid) for s in subs))
            with contextlib.suppress(BusError):
                await self.flush(timeout)  # every message sent before the UNSUBs is now parsed
        for s in subs:
            self._subs.pop(s.sid, None)
            s.delivery.open = False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(s.delivery.idle() for s in subs)), timeout)
        if self._transport is not None:
            with contextlib.suppress(BusError):
                await self.flush(timeout)  # what the last handlers published reached the server
        self._finish_close()

    async def close(self) -> None:
        """Close now, without draining."""
        self._finish_close()

    def _finish_close(self) -> None:
        if self.closed.is_set():
            return
        self.status = "closed"
        wire, self._wire, self._transport = self._wire, None, None
        if wire is not None and wire.transport is not None:
            wire.transport.close()
        self._fail_pongs(BusError(f"connection {self.name!r} closed"))
        for answer in self._requests.values():
            if not answer.done():
                answer.set_exception(BusError(f"connection {self.name!r} closed"))
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        self.closed.set()

    def _fail_pongs(self, exc: BusError) -> None:
        pongs, self._pongs = self._pongs, deque()
        for waiter in pongs:
            if waiter is not None and not waiter.done():
                waiter.set_exception(exc)


def _unused(msg: NatsMsg) -> None:
    """Handler of the reply subscription, whose messages :meth:`NatsBus.on_msg` routes itself."""


async def connect(url: str, name: str, *, reconnect_attempts: int = 60) -> NatsBus:
    """A connected :class:`NatsBus`; BusError (one line) when no server answers."""
    bus = NatsBus(url, name, reconnect_attempts=reconnect_attempts)
    await bus.connect()
    return bus
