"""An in-memory bus with NATS semantics, for fast unit tests of the services.

:class:`MemoryBroker` plays the server: subjects with ``*`` and ``>`` wildcards, queue groups
(one member per message), request/reply with timeouts and "no responders", a ``max_payload``
limit. Each service gets its own :class:`MemoryBus` (its "connection") from ``connect``, so
draining one service does not touch the others. With ``reorder_seed`` every delivery is delayed
by a seeded random time: messages then arrive in a different order than sent, even on one
subject from one publisher, which real NATS never does. The services must give the same results
anyway (that is the point of counting and key-ordering; see docs/architecture.md).
"""

from __future__ import annotations

import asyncio
import itertools
import random
from dataclasses import dataclass

from llmtwin.errors import BusError
from services.delivery import Delivery, Handler


@dataclass(frozen=True, slots=True)
class MemoryMsg:
    subject: str
    data: bytes
    reply: str = ""


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
    """One subscription; its handler runs as with NATS (:class:`services.delivery.Delivery`)."""

    def __init__(
        self, broker: MemoryBroker, owner: MemoryBus, subject: str, handler: Handler, queue: str
    ) -> None:
        self.broker, self.owner = broker, owner
        self.subject, self.queue_group = subject, queue
        self.delivery: Delivery[MemoryMsg] = Delivery(handler, subject)

    @property
    def active(self) -> bool:
        return self.delivery.open

    async def unsubscribe(self, limit: int = 0) -> None:
        """Stop receiving; what was delivered already is still handled (like a NATS drain)."""
        if self.delivery.open:
            self.delivery.open = False
            self.broker.subs.remove(self)

    async def finished(self) -> None:
        await self.delivery.idle()


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
        self.published = 0

    def connect(self, name: str = "") -> MemoryBus:
        return MemoryBus(self, name)

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
        self.published += 1
        loop = asyncio.get_running_loop()
        # Delivered from the event loop, never inside publish (as over a socket), so a handler
        # that publishes does not run the receiver's handler within its own.
        for s in targets:
            if self._rng is None:
                loop.call_soon(s.delivery.deliver, msg)
            else:
                loop.call_later(self._rng.uniform(0.0, self._max_delay_s), s.delivery.deliver, msg)
        return len(targets)


class MemoryBus:
    """One client connection to a :class:`MemoryBroker` (implements :class:`services.bus.Bus`)."""

    def __init__(self, broker: MemoryBroker, name: str = "") -> None:
        self.broker, self.name = broker, name
        self.subs: list[MemorySubscription] = []
        self.closed = False

    @property
    def max_payload(self) -> int:
        return self.broker.max_payload

    def _check(self, subject: str, data: bytes) -> None:
        if self.closed:
            raise BusError(f"connection {self.name!r} is closed")
        if len(data) > self.broker.max_payload:
            raise BusError(f"message of {len(data)} bytes on {subject} exceeds max_payload")

    def publish_nowait(self, subject: str, data: bytes, reply: str = "") -> None:
        self._check(subject, data)
        self.broker.route(MemoryMsg(subject, bytes(data), reply))

    async def publish(self, subject: str, data: bytes, reply: str = "") -> None:
        self.publish_nowait(subject, data, reply)

    async def subscribe(self, subject: str, handler: Handler, queue: str = "") -> MemorySubscription:
        if self.closed:
            raise BusError(f"connection {self.name!r} is closed")
        sub = MemorySubscription(self.broker, self, subject, handler, queue)
        self.broker.subs.append(sub)
        self.subs.append(sub)
        return sub

    async def request(self, subject: str, data: bytes, timeout: float) -> bytes:
        self._check(subject, data)
        inbox = self.broker.new_inbox()
        answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        def on_reply(msg: MemoryMsg) -> None:
            if not answer.done():
                answer.set_result(msg.data)

        sub = await self.subscribe(inbox, on_reply)
        try:
            if self.broker.route(MemoryMsg(subject, bytes(data), inbox)) == 0:
                raise BusError(f"nobody answers on {subject}")
            try:
                return await asyncio.wait_for(answer, timeout)
            except TimeoutError:
                raise BusError(f"no answer on {subject} within {timeout:g} s") from None
        finally:
            await sub.unsubscribe()

    async def flush(self, timeout: float = 5.0) -> None:
        await asyncio.sleep(0)

    async def drain(self) -> None:
        """Unsubscribe everything, let queued messages be handled, then close."""
        await asyncio.sleep(0)  # deliveries already under way arrive (a NATS drain's flush)
        subs, self.subs = self.subs, []
        for s in subs:
            await s.unsubscribe()
        await asyncio.gather(*(s.finished() for s in subs))
        self.closed = True
