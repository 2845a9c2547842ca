"""Shared fixtures: catalogs, a real nats-server, and the bus transports the service tests run on."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from memory_bus import MemoryBroker
from service_builders import Connect

from llmtwin.hardware import HardwareCatalog
from llmtwin.models import ModelCatalog
from llmtwin.runtime.embedded_nats import EmbeddedNats
from services.bus import Bus, NatsOptions, connect


@pytest.fixture(scope="session")
def hardware() -> HardwareCatalog:
    return HardwareCatalog()


@pytest.fixture(scope="session")
def models() -> ModelCatalog:
    return ModelCatalog()


@pytest.fixture(scope="session")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One nats-server of our own on a free loopback port, for the whole session."""
    with EmbeddedNats(tmp_path_factory.mktemp("nats")) as server:
        yield server.url


TRANSPORTS = ["memory", pytest.param("nats", marks=pytest.mark.nats)]


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> Connect:
    """How a test's services connect: each to the in-memory broker of the test, or each with its
    own nats-py connection to the session's nats-server."""
    if request.param == "memory":
        broker = MemoryBroker()

        async def to_memory(name: str) -> Bus:
            return broker.connect(name)

        return to_memory
    url = request.getfixturevalue("nats_url")

    async def to_nats(name: str) -> Bus:
        return await connect(NatsOptions(url, name))

    return to_nats
