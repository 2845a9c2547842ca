"""NatsBus (our NATS client) on a real nats-server: delivery, requests, drain, reconnection."""

from __future__ import annotations

import asyncio
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from llmtwin.errors import BusError
from llmtwin.runtime.natsd import EmbeddedNats, nats_server_binary
from services.bus import NatsBus, connect
from services.natsbus import NatsMsg

pytestmark = [pytest.mark.nats, pytest.mark.timeout(30)]


@pytest.fixture(scope="module")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with EmbeddedNats(tmp_path_factory.mktemp("nats")) as server:
        yield server.url


@pytest.fixture
async def pair(nats_url: str) -> AsyncIterator[tuple[NatsBus, NatsBus]]:
    a, b = await connect(nats_url, "a"), await connect(nats_url, "b")
    yield a, b
    await a.drain()
    await b.drain()


async def until(cond: object, timeout_s: float = 5.0) -> None:
    async def poll() -> None:
        while not cond():  # type: ignore[operator]
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), timeout_s)


async def test_wildcards_and_queue_groups_deliver_like_nats(pair: tuple[NatsBus, NatsBus]) -> None:
    """Plain subscribers get every message; a queue group shares them, one member each."""
    a, b = pair
    star: list[str] = []
    tail: list[str] = []
    group: list[str] = []
    await b.subscribe("t.*", lambda m: star.append(m.subject))
    await b.subscribe("t.>", lambda m: tail.append(m.subject))
    for _ in range(2):
        await b.subscribe("t.*", lambda m: group.append(m.subject), queue="workers")
    await b.flush()
    for i in range(10):
        a.publish_nowait(f"t.{i}", b"x")
    a.publish_nowait("t.x.y", b"x")
    await a.flush()
    await until(lambda: len(tail) == 11 and len(star) == 10 and len(group) == 10)
    assert star == [f"t.{i}" for i in range(10)]


async def test_handlers_of_one_subscription_never_overlap(pair: tuple[NatsBus, NatsBus]) -> None:
    """A coroutine handler that waits holds back the later messages; plain handlers run inline, in order."""
    a, b = pair
    seen: list[tuple[str, bytes]] = []
    running = 0

    def handler(msg: NatsMsg) -> object:
        if msg.data.startswith(b"slow"):
            return slow(msg)
        assert running == 0, "a handler ran while another was still running"
        seen.append(("fast", msg.data))
        return None

    async def slow(msg: NatsMsg) -> None:
        nonlocal running
        running += 1
        await asyncio.sleep(0.02)
        seen.append(("slow", msg.data))
        running -= 1

    await b.subscribe("order", handler)
    await b.flush()
    sent = [b"1", b"slow-2", b"3", b"4", b"slow-5", b"6"]
    for data in sent:
        a.publish_nowait("order", data)
    await until(lambda: len(seen) == len(sent))
    assert [d for _, d in seen] == sent


async def test_requests_get_answers_or_fail_with_a_reason(pair: tuple[NatsBus, NatsBus]) -> None:
    """Request/reply; nobody listening and nobody answering are BusErrors that say so."""
    a, b = pair

    def echo(msg: NatsMsg) -> None:
        b.publish_nowait(msg.reply, msg.data.upper())

    await b.subscribe("svc.echo", echo)
    await b.subscribe("svc.mute", lambda m: None)
    await b.flush()
    assert await a.request("svc.echo", b"hi", 2.0) == b"HI"
    with pytest.raises(BusError, match=r"nobody answers on svc\.nobody"):
        await a.request("svc.nobody", b"hi", 2.0)
    with pytest.raises(BusError, match=r"no answer on svc\.mute within 0\.2 s"):
        await a.request("svc.mute", b"hi", 0.2)


async def test_payload_limit_comes_from_the_server(pair: tuple[NatsBus, NatsBus]) -> None:
    """max_payload is the server's (1 MiB by default); a larger message is refused before sending."""
    a, _ = pair
    assert a.max_payload == 1 << 20
    with pytest.raises(BusError, match="max_payload"):
        a.publish_nowait("big", b"x" * (a.max_payload + 1))


async def test_drain_handles_what_arrived_and_sends_what_handlers_published(nats_url: str) -> None:
    """Draining lets handlers finish, their replies still go out, then the connection is closed."""
    a, b = await connect(nats_url, "a"), await connect(nats_url, "b")
    replies: list[bytes] = []
    await a.subscribe("back", lambda m: replies.append(m.data))

    async def slow_echo(msg: NatsMsg) -> None:
        await asyncio.sleep(0.01)
        await b.publish("back", msg.data)

    await b.subscribe("work", slow_echo)
    await b.flush()
    for i in range(5):
        a.publish_nowait("work", str(i).encode())
    await a.flush()
    await until(lambda: len(replies) >= 1)
    await b.drain()
    await until(lambda: len(replies) == 5)
    assert b.closed.is_set()
    with pytest.raises(BusError, match="closed"):
        b.publish_nowait("work", b"late")
    await a.drain()


async def test_a_flush_cancelled_before_its_pong_leaves_the_connection_usable(nats_url: str) -> None:
    """Ctrl-C during a flush (up's cleanup) must not make later flushes and the drain time out."""
    bus = await connect(nats_url, "flush-test")
    early = asyncio.ensure_future(bus.flush())
    await asyncio.sleep(0)  # the PING is queued, its PONG cannot have come back yet
    early.cancel()
    await asyncio.wait_for(bus.flush(timeout=2.0), 5.0)
    await asyncio.wait_for(bus.drain(), 5.0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(port: int, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(nats_server_binary()), "-a", "127.0.0.1", "-p", str(port)],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


async def test_a_server_restart_is_survived_with_subscriptions_restored(tmp_path: Path) -> None:
    """Reconnect, subscribe again and send what was published meanwhile (the server restart case)."""
    port = free_port()
    server = start_server(port, tmp_path / "nats.log")
    try:
        url = f"nats://127.0.0.1:{port}"
        a = b = None
        for _ in range(100):  # the server needs a moment to listen
            try:
                a = NatsBus(url, "a", reconnect_wait_s=0.05, reconnect_attempts=200)
                await a.connect()
                break
            except BusError:
                await asyncio.sleep(0.05)
        assert a is not None
        b = NatsBus(url, "b", reconnect_wait_s=0.05, reconnect_attempts=200)
        await b.connect()
        got: list[bytes] = []
        await b.subscribe("after", lambda m: got.append(m.data))
        await b.flush()
        a.publish_nowait("after", b"before")
        await until(lambda: got == [b"before"])

        server.terminate()
        server.wait(10)
        await until(lambda: a.status == "reconnecting" and b.status == "reconnecting")
        a.publish_nowait("after", b"meanwhile")  # buffered until a is back
        server = start_server(port, tmp_path / "nats.log")
        await until(lambda: a.status == "connected" and b.status == "connected", 10.0)
        await b.flush()
        a.publish_nowait("after", b"again")
        await until(lambda: got[-1:] == [b"again"])
        # "meanwhile" arrives only if b had subscribed again before a's buffer went out.
        assert got[0] == b"before"
        assert set(got[1:]) <= {b"meanwhile", b"again"}
        await a.drain()
        await b.drain()
    finally:
        server.terminate()
        server.wait(10)


async def test_no_server_is_one_line_error() -> None:
    """Connecting where nothing listens fails at once with the URL in the message."""
    url = f"nats://127.0.0.1:{free_port()}"
    with pytest.raises(BusError, match=f"cannot connect to NATS at {url}"):
        await connect(url, "nobody")
