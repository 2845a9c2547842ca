"""NatsBus on a real nats-server: a cancelled flush leaves the connection usable."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from llmtwin.runtime.natsd import EmbeddedNats
from services.bus import connect

pytestmark = [pytest.mark.nats, pytest.mark.timeout(30)]


@pytest.fixture(scope="module")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with EmbeddedNats(tmp_path_factory.mktemp("nats")) as server:
        yield server.url


async def test_a_flush_cancelled_before_its_pong_leaves_the_connection_usable(nats_url: str) -> None:
    """Ctrl-C during a flush (up's cleanup) must not make later flushes and the drain time out."""
    bus = await connect(nats_url, "flush-test")
    early = asyncio.ensure_future(bus.flush())
    await asyncio.sleep(0)  # the PING is queued, its PONG cannot have come back yet
    early.cancel()
    await asyncio.wait_for(bus.flush(timeout=2.0), 5.0)
    await asyncio.wait_for(bus.drain(), 5.0)
