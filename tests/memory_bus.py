"""An in-memory bus with NATS semantics, for fast tests of the services (``services.bus.Bus``).

:class:`MemoryBroker` plays the server: subjects with ``*`` and ``>`` wildcards, queue groups
(one member per message), request/reply with timeouts and "no responders", a ``max_payload``
limit. Each service gets its own :class:`MemoryBus` (its "connection") from ``connect``. As
with nats-py, each subscription handles its messages one at a time, in arrival order, in a task
of its own. With ``reorder_seed`` every delivery is delayed by a seeded random time: messages
then arrive in a different order than sent, even on one subject from one publisher, which real
NATS never does. The services must give the same results anyway (they never use arrival
order; see docs/architecture.md). :meth:`MemoryBroker.restart` plays a server restart (messages
in flight lost, every connection told it reconnected) and :meth:`MemoryBus.kill` a process
killed (its subscriptions gone at once, nothing drained).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import random
from dataclasses import dataclass

from llmtwin.errors import BusError
from services.bus import BusListener, Handler

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MemoryMsg:
    subject: str
    data: bytes
    reply: str = ""


@functools.lru_cache(maxsize=1 << 16)  # a run routes its few subjects tens of thousands of times
def matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` is one token, a final ``>`` one or more tokens."""
    pat, sub = pattern.split("."), subject.split(".")
    for i, p in enumerate(pat):
        if p == ">":
            return len(sub) > i
        if i >= len(sub) or (p != "*" and p != sub[i]):
            return False
    return len(pat) == len(sub)


class MemorySubscription:
    """One subscription: a queue and the task that hands its messages to the handler in order."""

    def __init__(self, broker: MemoryBroker, subject: str, handler: Handler, queue: str) -> None:
        self.broker, self.subject, self.handler, self.queue_group = broker, subject, handler, queue
        self.open = True
        self._queue: asyncio.Queue[MemoryMsg | None] = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._run())

    def deliver(self, msg: MemoryMsg, epoch: int = 0) -> None:
        if self.open and epoch == self.broker.epoch:
            self._queue.put_nowait(msg)

    async def _run(self) -> None:
        while (msg := await self._queue.get()) is not None:
            try:
                await self.handler(msg)
            except Exception:
                log.exception("handler of %s failed", self.subject)

    async def drain(self) -> None:
        """Stop receiving; return once what was received is handled (not when called from the handler)."""
        if not self.open:
            return
        await asyncio.sleep(0)  # deliveries already under way arrive (a NATS drain's flush)
        self.open = False
        self.broker.subs.remove(self)
        self._queue.put_nowait(None)
        if asyncio.current_task() is not self._task:
            await self._task

    def kill(self) -> None:
        """Gone at once: nothing queued is handled (a killed process)."""
        if self.open:
            self.open = False
            self.broker.subs.remove(self)
        self._task.cancel()


class MemoryBroker:
    """The in-memory "server" that every :class:`MemoryBus` of a test connects to."""

    def __init__(
        self, *, max_payload: int = 1 << 20, reorder_seed: int | None = None, max_delay_s: float = 0.002
    ) -> None:
        self.max_payload = max_payload
        self.subs: list[MemorySubscription] = []
        self._rng = random.Random(reorder_seed) if reorder_seed is not None else None
        self._max_delay_s = max_delay_s
        self._rr = itertools.count()
        self._inbox_ids = itertools.count()
        self.epoch = 0
        """Raised by a restart: deliveries of an earlier epoch are lost."""
        self.buses: list[MemoryBus] = []

    def connect(self, name: str = "") -> MemoryBus:
        bus = MemoryBus(self, name)
        self.buses.append(bus)
        return bus

    async def restart(self) -> None:
        """A server restart: every message in flight is lost, then every open connection
        reconnects (subscriptions kept, as nats-py restores them) and is told so."""
        self.epoch += 1
        for bus in list(self.buses):
            if not bus.closed.is_set():
                for listener in list(bus.listeners):
                    await listener.bus_reconnected()

    def new_inbox(self) -> str:
        return f"_INBOX.{next(self._inbox_ids)}"

    def route(self, msg: MemoryMsg) -> int:
        """Deliver ``msg`` to every plain subscriber and one member per queue group; how many got it."""
        plain: list[MemorySubscription] = []
        groups: dict[str, list[MemorySubscription]] = {}
        for s in self.subs:
            if matches(s.subject, msg.subject):
                if s.queue_group:
                    groups.setdefault(s.queue_group, []).append(s)
                else:
                    plain.append(s)
        targets = plain + [members[next(self._rr) % len(members)] for members in groups.values()]
        loop = asyncio.get_running_loop()
        # Delivered from the event loop, never inside publish (as over a socket).
        for s in targets:
            if self._rng is None:
                loop.call_soon(s.deliver, msg, self.epoch)
            else:
                loop.call_later(self._rng.uniform(0.0, self._max_delay_s), s.deliver, msg, self.epoch)
        return len(targets)


class MemoryBus:
    """One client connection to a :class:`MemoryBroker` (a :class:`services.bus.Bus`)."""

    def __init__(self, broker: MemoryBroker, name: str = "") -> None:
        self.broker, self.name = broker, name
        self.subs: list[MemorySubscription] = []
        self.closed = asyncio.Event()
        self.listeners: list[BusListener] = []

    def listen(self, listener: BusListener) -> None:
        if listener not in self.listeners:
            self.listeners.append(listener)

    def unlisten(self, listener: BusListener) -> None:
        if listener in self.listeners:
            self.listeners.remove(listener)

    def kill(self) -> None:
        """The process died: its subscriptions vanish, nothing is drained or answered."""
        for s in self.subs:
            s.kill()
        self.subs = []
        self.listeners = []
        self.closed.set()

    @property
    def max_payload(self) -> int:
        return self.broker.max_payload

    def _check(self, subject: str, data: bytes) -> None:
        if self.closed.is_set():
            raise BusError(f"connection {self.name!r} is closed")
        if len(data) > self.broker.max_payload:
            raise BusError(f"message of {len(data)} bytes on {subject} exceeds max_payload")

    async def publish(self, subject: str, data: bytes, reply: str = "") -> None:
        self._check(subject, data)
        self.broker.route(MemoryMsg(subject, bytes(data), reply))

    async def subscribe(self, subject: str, handler: Handler, queue: str = "") -> MemorySubscription:
        if self.closed.is_set():
            raise BusError(f"connection {self.name!r} is closed")
        sub = MemorySubscription(self.broker, subject, handler, queue)
        self.broker.subs.append(sub)
        self.subs.append(sub)
        return sub

    async def request(self, subject: str, data: bytes, timeout_s: float) -> bytes:
        self._check(subject, data)
        inbox = self.broker.new_inbox()
        answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        async def on_reply(msg: MemoryMsg) -> None:
            if not answer.done():
                answer.set_result(msg.data)

        sub = await self.subscribe(inbox, on_reply)
        try:
            if self.broker.route(MemoryMsg(subject, bytes(data), inbox)) == 0:
                raise BusError(f"nobody answers on {subject}")
            try:
                return await asyncio.wait_for(answer, timeout_s)
            except TimeoutError:
                raise BusError(f"no answer on {subject} within {timeout_s:g} s") from None
        finally:
            await sub.drain()

    async def flush(self, timeout_s: float = 5.0) -> None:
        await asyncio.sleep(0)

    async def close(self) -> None:
        """Drain every subscription, then close."""
        subs, self.subs = self.subs, []
        for s in subs:
            await s.drain()
        self.closed.set()
