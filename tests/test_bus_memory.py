"""MemoryBus: NATS subject wildcards, queue groups, request/reply, payload limit, drain."""

from __future__ import annotations

import asyncio

import pytest

from llmtwin.errors import BusError
from services.memory import MemoryBroker, MemoryBus, MemoryMsg, matches

pytestmark = pytest.mark.timeout(10)


def test_subject_matching_follows_nats_rules() -> None:
    """``*`` matches one token, a final ``>`` one or more; everything else literally."""
    assert matches("a.b.c", "a.b.c")
    assert matches("a.*.c", "a.x.c")
    assert not matches("a.*.c", "a.x.y.c")
    assert matches("a.>", "a.b.c")
    assert not matches("a.>", "a")
    assert not matches("a.b", "a.b.c")
    assert not matches("a.b.c", "a.b")


class Got(list[MemoryMsg]):
    """Messages a subscription received; ``wait_len`` waits for a count (an event, no polling)."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = asyncio.Event()

    async def handler(self, msg: MemoryMsg) -> None:
        self.append(msg)
        self.changed.set()


async def _collect(bus: MemoryBus, subject: str, queue: str = "") -> Got:
    got = Got()
    await bus.subscribe(subject, got.handler, queue)
    return got


async def wait_total(n: int, *gots: Got) -> None:
    """Wait until the lists together hold ``n`` messages."""
    while sum(len(g) for g in gots) < n:
        for g in gots:
            g.changed.clear()
        waits = [asyncio.ensure_future(g.changed.wait()) for g in gots]
        _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for w in pending:
            w.cancel()


async def test_wildcards_and_queue_groups_deliver_like_nats() -> None:
    """Plain subscribers all get a message; a queue group shares them, one member each."""
    broker = MemoryBroker()
    a, b, c = broker.connect("a"), broker.connect("b"), broker.connect("c")
    plain = await _collect(a, "t.>")
    q1 = await _collect(b, "t.*", queue="g")
    q2 = await _collect(c, "t.*", queue="g")
    for i in range(10):
        await a.publish(f"t.{i}", b"x")
    await asyncio.wait_for(wait_total(10, plain), 5)
    await asyncio.wait_for(wait_total(10, q1, q2), 5)
    assert q1
    assert q2
    for bus in (a, b, c):
        await bus.drain()


async def test_request_reply_with_timeout_and_no_responders() -> None:
    """A request gets its answer; nobody listening and a silent listener both raise BusError."""
    broker = MemoryBroker()
    server, client = broker.connect("s"), broker.connect("c")

    async def echo(msg: MemoryMsg) -> None:
        if msg.data != b"ignore":
            await server.publish(msg.reply, msg.data.upper())

    with pytest.raises(BusError, match="nobody answers"):
        await client.request("svc", b"hi", 1.0)
    await server.subscribe("svc", echo)
    assert await client.request("svc", b"hi", 1.0) == b"HI"
    with pytest.raises(BusError, match="no answer"):
        await client.request("svc", b"ignore", 0.05)
    await server.drain()
    await client.drain()


async def test_payload_limit_and_closed_connection() -> None:
    """Messages over max_payload are refused; a drained connection refuses to publish."""
    broker = MemoryBroker(max_payload=100)
    bus = broker.connect("x")
    with pytest.raises(BusError, match="max_payload"):
        await bus.publish("a", b"x" * 101)
    await bus.drain()
    with pytest.raises(BusError, match="closed"):
        await bus.publish("a", b"x")


async def test_drain_handles_what_is_queued() -> None:
    """Draining lets a subscription finish its queued messages before closing."""
    broker = MemoryBroker()
    pub, sub = broker.connect("p"), broker.connect("s")
    got = await _collect(sub, "q")
    for _ in range(5):
        await pub.publish("q", b"m")
    await sub.drain()
    assert len(got) == 5


async def test_reorder_mode_changes_arrival_order() -> None:
    """With a reorder seed, messages from one publisher on one subject arrive out of order."""
    broker = MemoryBroker(reorder_seed=3, max_delay_s=0.005)
    pub, sub = broker.connect("p"), broker.connect("s")
    got = await _collect(sub, "q")
    for i in range(30):
        await pub.publish("q", str(i).encode())
    await asyncio.wait_for(wait_total(30, got), 5)
    order = [int(m.data) for m in got]
    assert sorted(order) == list(range(30))
    assert order != list(range(30))
