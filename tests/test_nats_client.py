"""The services' nats-py client (``services/nats_client.py``) on a real nats-server: a publish
written at once, bytes parsed and a message handled where they arrive, and, where that cannot
be done, nats-py's order kept: one message at a time per subscription, bytes parsed in order,
a closing connection waiting for a handler that waited."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

import pytest
from nats.aio.msg import Msg as NatsMsg

from services.bus import Msg
from services.nats_bus import NatsOptions, connect
from services.nats_client import DirectHandler, ServicesClient

pytestmark = [pytest.mark.timeout(60), pytest.mark.nats]


def _raw_subscriber(url: str, subject: str, ready: threading.Event, got: threading.Event) -> None:
    """A NATS subscriber on a plain socket (no event loop): sets ``got`` on the first message."""
    host, port = url.removeprefix("nats://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f'CONNECT {{"verbose":false}}\r\nSUB {subject} 1\r\nPING\r\n'.encode())
        seen = b""
        while b"PONG" not in seen:
            seen += sock.recv(4096)
        ready.set()
        while b"MSG " not in seen:
            seen += sock.recv(4096)
        got.set()


async def test_a_publish_is_written_before_the_publisher_yields(nats_url: str) -> None:
    """A subscriber elsewhere has a publish while the publisher's event loop is still busy.
    nats-py alone waits for its flusher task, which cannot run until the loop is free."""
    ready, got = threading.Event(), threading.Event()
    reader = threading.Thread(target=_raw_subscriber, args=(nats_url, "inline", ready, got), daemon=True)
    reader.start()
    assert ready.wait(10)
    bus = await connect(NatsOptions(nats_url, "writer"))
    try:
        await bus.publish("inline", b"now")
        arrived = got.wait(5.0)  # blocks this event loop: none of its tasks runs meanwhile
    finally:
        await bus.close()
    assert arrived


def _arrive(nc: ServicesClient, *chunks: bytes) -> None:
    """Hand ``chunks`` to the connection as its transport does: from a callback, not a task."""
    reader = nc._transport._io_reader  # type: ignore[union-attr]
    for chunk in chunks:
        reader.feed_data(chunk)


async def test_a_message_is_handled_in_the_callback_its_bytes_arrive_in(nats_url: str) -> None:
    """The handler has run, as the connection's read loop, before the transport's call that
    brought its bytes returns. nats-py alone wakes its read-loop task, which queues the message
    for the subscription's task: two turns of the event loop later."""
    bus = await connect(NatsOptions(nats_url, "direct"))
    seen: list[tuple[bytes, asyncio.Task[Any] | None]] = []

    async def handler(msg: Msg) -> None:
        seen.append((msg.data, asyncio.current_task()))

    try:
        sub = await bus.subscribe("direct.x", handler)
        await bus.flush()
        assert sub.sub is not None
        loop = asyncio.get_running_loop()
        handled: asyncio.Future[list[tuple[bytes, asyncio.Task[Any] | None]]] = loop.create_future()

        def arrive() -> None:
            _arrive(bus.nc, f"MSG direct.x {sub.sub._id} 5\r\nhello\r\n".encode())  # type: ignore[union-attr]
            handled.set_result(list(seen))

        loop.call_soon(arrive)
        assert await handled == [(b"hello", bus.nc._reading_task)]
    finally:
        await bus.close()


async def test_a_handler_that_waits_holds_its_subscriptions_later_messages(nats_url: str) -> None:
    """A handler that waits goes on as a task; the messages after it wait for it, in order."""
    a, b = await connect(NatsOptions(nats_url, "a")), await connect(NatsOptions(nats_url, "b"))
    release = asyncio.Event()
    steps: list[str] = []
    done = asyncio.Event()

    async def handler(msg: Msg) -> None:
        steps.append(f"start {msg.data.decode()}")
        if msg.data == b"1":
            await release.wait()
        steps.append(f"end {msg.data.decode()}")
        if msg.data == b"3":
            done.set()

    try:
        await b.subscribe("order", handler)
        await b.flush()
        for data in (b"1", b"2", b"3"):
            await a.publish("order", data)
        await a.flush()
        await b.flush()  # everything the server sent b before its PONG has been read
        assert steps == ["start 1"]
        release.set()
        await asyncio.wait_for(done.wait(), 10)
        assert steps == ["start 1", "end 1", "start 2", "end 2", "start 3", "end 3"]
    finally:
        await a.close()
        await b.close()


async def test_closing_waits_for_a_handler_that_waited(nats_url: str) -> None:
    """nats-py's drain waits for a handler run at once that then waited, as for a queued one."""
    a, b = await connect(NatsOptions(nats_url, "a")), await connect(NatsOptions(nats_url, "b"))
    steps: list[str] = []

    async def handler(msg: Msg) -> None:
        steps.append("start")
        await asyncio.sleep(0.3)
        steps.append("end")

    await b.subscribe("slow", handler)
    await b.flush()
    await a.publish("slow", b"x")
    await a.flush()
    await b.flush()
    assert steps == ["start"]
    await b.close()
    assert steps == ["start", "end"]
    await a.close()


async def test_bytes_after_a_parse_that_waits_are_parsed_after_it(nats_url: str) -> None:
    """A parse begun at once that waits (here in the error callback of a server's -ERR) goes
    on as a task, and the read loop parses the bytes after it only once it is done."""
    steps: list[str] = []

    async def slow_error(exc: Exception) -> None:
        steps.append("error start")
        await asyncio.sleep(0.2)
        steps.append("error end")

    got = asyncio.Event()

    async def handler(msg: NatsMsg) -> None:
        steps.append(f"message {msg.data.decode()}")
        got.set()

    nc = ServicesClient()
    await nc.connect(servers=[nats_url], error_cb=slow_error)
    try:
        sub = await nc.subscribe_direct("parse.x", "", DirectHandler(handler))
        await nc.flush()
        loop = asyncio.get_running_loop()
        err = b"-ERR 'Permissions Violation for Publish to \"parse.y\"'\r\n"
        loop.call_soon(_arrive, nc, err, f"MSG parse.x {sub._id} 2\r\nhi\r\n".encode())
        await asyncio.wait_for(got.wait(), 10)
        assert steps == ["error start", "error end", "message hi"]
    finally:
        await nc.close()
