"""The :class:`~services.bus.Bus` interface on nats-py: :class:`NatsBus`, its options and :func:`connect`.

nats-py 2.16 has one defect designed around here (``../shared/reference/observability-security.md``
section 6): a ``flush`` that times out or is cancelled leaves a cancelled future in the PONG
queue, and the late PONG then kills the connection's read loop without a trace (no reconnect,
no callback, ``is_connected`` still true). So no nats-py flush is ever cancelled or timed out:
:meth:`NatsBus.flush` starts nats-py's flush with a timeout that never expires, as a task of
its own, and waits on it through ``asyncio.shield`` with its own deadline; a caller that gives
up (deadline, Ctrl-C) leaves the PONG to arrive into a live future. The same holds for draining
a subscription (nats-py's ``Subscription.drain`` flushes with a timeout), so
:class:`NatsSubscription` drains on top of :meth:`NatsBus.flush`.

The connection is nats-py's client with three event-loop hand-offs taken out of every message's
path (:class:`~services.nats_client.ServicesClient`): a publish is written at once, arriving bytes
are parsed where they arrive, and a subscription's handler runs at once for a message when nothing
of that subscription is queued or running. A handler therefore runs inside the connection's read
loop until it first waits (the rules are in that module's docstring).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from dataclasses import dataclass, field
from typing import Any

import nats
import nats.errors
from nats.aio.msg import Msg as NatsMsg
from nats.aio.subscription import Subscription as NatsSub

from llmtwin.errors import BusError, ConfigurationError
from services.bus import BusListener, Handler, ServerNotAnswering
from services.nats_client import DirectHandler, ServicesClient
from services.ratelog import RateLimitedLog

log = logging.getLogger(__name__)

NEVER_S = 10**9
"""A nats-py timeout that never expires (seconds): see the module docstring."""


@dataclass(frozen=True, slots=True)
class NatsOptions:
    """How to connect: what nats-py's ``connect`` takes, with our defaults, credentials and TLS."""

    url: str
    """``nats://host:port`` or ``tls://host:port``."""
    name: str
    """Connection name, shown by the server's monitoring (the service name)."""
    reconnect_attempts: int = 60
    """Once connected: how often to try to reconnect after losing the server. The first
    connection is tried twice, ``reconnect_wait_s`` apart, then fails (a supervisor, ``up`` or
    compose, restarts the service)."""
    reconnect_wait_s: float = 0.5
    connect_timeout_s: float = 5.0
    ping_interval_s: float = 30.0
    """Keep-alive PING every this many seconds; two unanswered: the connection is stale, reconnect."""
    inbox_prefix: str = "_INBOX"
    """Prefix of the reply subjects of this connection's requests (per user under permissions)."""
    drain_timeout_s: float = 10.0
    """How long :meth:`NatsBus.close` lets subscriptions finish before it closes anyway."""
    nkey_seed: str = field(default="", repr=False)
    """The user's nkey seed (``SU...``; empty: connect without credentials). Never printed."""
    tls_ca: str = ""
    """CA certificate file (PEM) that signed the server's certificate; set for TLS."""
    tls_cert: str = ""
    """Client certificate file (PEM), for servers that verify clients."""
    tls_key: str = ""
    """Private key of ``tls_cert`` (PEM)."""

    def connect_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "servers": [self.url],
            "name": self.name,
            "max_reconnect_attempts": self.reconnect_attempts,
            "reconnect_time_wait": self.reconnect_wait_s,
            "connect_timeout": self.connect_timeout_s,
            "ping_interval": self.ping_interval_s,
            "inbox_prefix": self.inbox_prefix,
            "drain_timeout": self.drain_timeout_s,
        }
        if self.nkey_seed:
            kwargs["nkeys_seed_str"] = self.nkey_seed
        context = self.tls_context()
        if context is not None:
            kwargs["tls"] = context
        return kwargs

    def tls_context(self) -> ssl.SSLContext | None:
        """The TLS context (None without TLS): the server verified against ``tls_ca`` (else the
        system's CAs), our certificate presented when given. ConfigurationError naming a bad file."""
        if not (self.tls_ca or self.tls_cert or self.url.startswith("tls://")):
            return None
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigurationError("TLS: give both a client certificate and its key, or neither")
        try:
            context = ssl.create_default_context(cafile=self.tls_ca or None)
            if self.tls_cert:
                context.load_cert_chain(self.tls_cert, self.tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(f"TLS: cannot load the certificates: {exc}") from None
        return context


class NatsSubscription:
    """One subscription; its handler runs one message at a time, in order (at once where it can,
    :class:`~services.nats_client.DirectHandler`), errors logged."""

    def __init__(self, bus: NatsBus, subject: str, handler: Handler) -> None:
        self.bus, self.subject, self.handler = bus, subject, handler
        self.sub: NatsSub | None = None
        self.handled = 0
        self.cutoff: int | None = None
        """While draining: how many messages to handle; later ones arrived after the drain
        began and are dropped (as after an UNSUB)."""
        self._caught_up = asyncio.Event()
        self._in_handler: asyncio.Task[Any] | None = None
        """The task the handler runs in (the connection's read loop while it runs at once)."""
        self.direct = DirectHandler(self.on_msg, moved=self._moved)

    def _moved(self, task: asyncio.Task[Any]) -> None:
        self._in_handler = task

    async def on_msg(self, msg: NatsMsg) -> None:
        """One message (one at a time, in order)."""
        if self.cutoff is not None and self.handled >= self.cutoff:
            return
        self._in_handler = asyncio.current_task()
        try:
            await self.handler(msg)
        except Exception:  # never ends the subscription (nats-py would pass it to error_cb)
            log.exception("handler of %s failed", self.subject)
        finally:
            self._in_handler = None
            self.handled += 1
            if self.cutoff is not None and self.handled >= self.cutoff:
                self._caught_up.set()

    async def drain(self) -> None:
        """Handle what the server sent before it answered this drain's PING, drop the rest,
        unsubscribe; never raises. (nats-py's own drain sends the UNSUB first, but its
        unsubscribe also stops the handler's task, and its flush has the defect.)"""
        sub, self.sub = self.sub, None
        if sub is None:
            return
        if not self.bus.unanswered:  # a server that did not answer the last PING would not now
            with contextlib.suppress(BusError):
                await self.bus.flush()  # every message the server sent before its PONG is now queued
        self.cutoff = sub.delivered
        own = asyncio.current_task() is self._in_handler  # drained from its own handler
        if self.handled + (1 if own else 0) < self.cutoff:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._caught_up.wait(), self.bus.options.drain_timeout_s)
        with contextlib.suppress(nats.errors.Error):
            await sub.unsubscribe()


class NatsBus:
    """:class:`Bus` over one nats-py connection; see the module docstring."""

    def __init__(self, options: NatsOptions) -> None:
        self.options = options
        self.nc = ServicesClient()
        self._closed = asyncio.Event()
        self._flushes: set[asyncio.Task[None]] = set()
        """nats-py flushes still waiting for their PONG (never cancelled while connected)."""
        self._listeners: list[BusListener] = []
        self._errors = RateLimitedLog(log)
        self.reconnects = 0
        self._refused_auth = False
        self._last_error = ""
        self._opened = False
        """Connected once: from then on errors are logged (before, open() raises them as one line)."""
        """The last error nats-py reported (named when the first connection fails)."""
        """The server said "Authorization Violation" (reported by nats-py's error callback)."""
        self.unanswered = False
        """The last flush found the server not answering (and none has succeeded since):
        draining and closing then skip what needs its answer."""

    async def open(self) -> None:
        """Connect; BusError (one line) when no server answers, it refuses our credentials, or
        TLS fails. Bounded in time: nats-py retries some failures (a TLS certificate it cannot
        verify) forever."""
        connecting = self.nc.connect(
            **{**self.options.connect_kwargs(), "max_reconnect_attempts": 1},
            error_cb=self._on_error,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
            closed_cb=self._on_closed,
        )
        try:
            await asyncio.wait_for(
                connecting, 2 * self.options.connect_timeout_s + self.options.reconnect_wait_s
            )
        except (OSError, TimeoutError, nats.errors.Error) as exc:
            self._closed.set()
            with contextlib.suppress(nats.errors.Error, OSError):
                await self.nc.close()
            if isinstance(exc, nats.errors.AuthorizationError) or self._refused_auth:
                raise BusError(
                    f"NATS at {self.options.url} refused {self.options.name!r}: authorization violation "
                    "(no credentials, or a seed the server does not know)"
                ) from None
            why = self._last_error or str(exc) or type(exc).__name__
            raise BusError(f"cannot connect to NATS at {self.options.url}: {why}") from None
        # nats-py would retry the first connection as often as a lost one (a minute by default):
        # the configured count applies from now on (nats-py reads it when the connection is lost).
        self.nc.options["max_reconnect_attempts"] = self.options.reconnect_attempts
        self._opened = True

    def listen(self, listener: BusListener) -> None:
        if listener not in self._listeners:
            self._listeners.append(listener)

    def unlisten(self, listener: BusListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    async def _on_error(self, exc: Exception) -> None:
        text = str(exc) or type(exc).__name__
        self._last_error = text
        if isinstance(exc, nats.errors.AuthorizationError) or "authorization violation" in text.lower():
            self._refused_auth = True
        if not self._opened:
            log.debug("nats (%s): while connecting: %s", self.options.name, text)
            return
        if "permissions violation" in text.lower():
            operation = "subscribe" if "subscription" in text.lower() else "publish"
            self._errors.warn(f"refused-{operation}", f"nats ({self.options.name}): {text}")
            for listener in list(self._listeners):
                listener.bus_refused(operation, text)
            return
        self._errors.warn(type(exc).__name__, f"nats ({self.options.name}): {text}")

    async def _on_disconnected(self) -> None:
        if not self.nc.is_closed:
            log.info("nats (%s): disconnected from %s", self.options.name, self.options.url)

    async def _on_reconnected(self) -> None:
        self.reconnects += 1
        log.warning("nats (%s): reconnected to %s", self.options.name, self.options.url)
        for listener in list(self._listeners):
            try:
                await listener.bus_reconnected()
            except Exception:  # a listener's failure must not end nats-py's callback task
                log.exception("nats (%s): reconnection listener failed", self.options.name)

    async def _on_closed(self) -> None:
        self._closed.set()

    @property
    def max_payload(self) -> int:
        return int(self.nc.max_payload)

    @property
    def closed(self) -> asyncio.Event:
        return self._closed

    @property
    def connected(self) -> bool:
        """Connected now (False while reconnecting and once closed)."""
        return bool(self.nc.is_connected)

    async def publish(self, subject: str, data: bytes, reply: str = "") -> None:
        try:
            await self.nc.publish(subject, data, reply)
        except nats.errors.MaxPayloadError:
            raise BusError(
                f"message of {len(data)} bytes on {subject} exceeds max_payload ({self.max_payload})"
            ) from None
        except nats.errors.Error as exc:
            raise BusError(f"cannot publish on {subject}: {exc or type(exc).__name__}") from None

    async def subscribe(self, subject: str, handler: Handler, queue: str = "") -> NatsSubscription:
        sub = NatsSubscription(self, subject, handler)
        try:
            sub.sub = await self.nc.subscribe_direct(subject, queue, sub.direct)
        except nats.errors.Error as exc:
            raise BusError(f"cannot subscribe to {subject}: {exc or type(exc).__name__}") from None
        return sub

    async def request(self, subject: str, data: bytes, timeout_s: float) -> bytes:
        try:
            msg = await self.nc.request(subject, data, timeout=timeout_s)
        except nats.errors.NoRespondersError:
            raise BusError(f"nobody answers on {subject}") from None
        except nats.errors.TimeoutError:
            raise BusError(f"no answer on {subject} within {timeout_s:g} s") from None
        except nats.errors.Error as exc:
            raise BusError(f"request on {subject} failed: {exc or type(exc).__name__}") from None
        return bytes(msg.data)

    async def flush(self, timeout_s: float = 5.0) -> None:
        if not self.nc.is_connected:
            state = "closed" if self.nc.is_closed else "not connected"
            raise BusError(f"connection {self.options.name!r} to {self.options.url} is {state}")
        task = asyncio.ensure_future(self.nc.flush(timeout=NEVER_S))
        self._flushes.add(task)
        task.add_done_callback(self._flushed)
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout_s)
        except TimeoutError:
            self.unanswered = True
            raise ServerNotAnswering(
                f"nats-server at {self.options.url} not answering (no PONG within {timeout_s:g} s)"
            ) from None
        except nats.errors.Error as exc:
            raise BusError(f"flush on {self.options.url} failed: {exc or type(exc).__name__}") from None

    def _flushed(self, task: asyncio.Task[None]) -> None:
        self._flushes.discard(task)
        if not task.cancelled() and task.exception() is None:  # retrieved: reported to the caller
            self.unanswered = False

    async def close(self) -> None:
        if self.nc.is_closed:
            return
        draining = asyncio.ensure_future(self._drain() if not self.unanswered else asyncio.sleep(0))
        # A drain stuck on a frozen server must not hold the caller: close it after the grace.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(draining), self.options.drain_timeout_s + 1.0)
        if not self.nc.is_closed:
            with contextlib.suppress(nats.errors.Error):
                await self.nc.close()
        for task in list(self._flushes):  # the read loop is gone: nothing can resolve them now
            task.cancel()
        self._closed.set()

    async def _drain(self) -> None:
        try:
            await self.nc.drain()
        except (nats.errors.Error, OSError) as exc:  # reconnecting or already closed: just close
            log.debug("nats (%s): drain: %s", self.options.name, exc)


async def connect(options: NatsOptions) -> NatsBus:
    """A connected :class:`NatsBus`; BusError (one line) when no server answers."""
    bus = NatsBus(options)
    await bus.open()
    return bus
