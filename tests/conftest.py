"""Shared fixtures: catalogs, real nats-servers, and the bus transports the service tests run on."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from memory_bus import MemoryBroker
from service_builders import Connect, SecureNats, start_secure_nats

from llmtwin.hardware import HardwareCatalog
from llmtwin.models import ModelCatalog
from llmtwin.runtime.embedded_nats import EmbeddedNats
from services.bus import Bus
from services.nats_bus import NatsOptions, connect


@pytest.fixture(scope="session")
def hardware() -> HardwareCatalog:
    return HardwareCatalog()


@pytest.fixture(scope="session")
def models() -> ModelCatalog:
    return ModelCatalog()


@pytest.fixture(scope="session")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One open nats-server of our own on a free loopback port (no users), for bus-level tests."""
    with EmbeddedNats(tmp_path_factory.mktemp("nats")) as server:
        yield server.url


@pytest.fixture(scope="session")
def secure_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureNats]:
    """One nats-server with a user (nkey, role permissions) per test service name, as
    ``llmtwin up`` runs its own, for the whole session."""
    with start_secure_nats(tmp_path_factory.mktemp("secure-nats")) as server:
        yield server


TRANSPORTS = ["memory", pytest.param("nats", marks=pytest.mark.nats)]


def memory_connect() -> Connect:
    broker = MemoryBroker()

    async def to_memory(name: str) -> Bus:
        return broker.connect(name)

    return to_memory


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> Connect:
    """How a test's services connect: each to the in-memory broker of the test, or each as its
    own user (nkey, its role's permissions) with its own nats-py connection to the session's
    secured nats-server."""
    if request.param == "memory":
        return memory_connect()
    server: SecureNats = request.getfixturevalue("secure_nats")
    return server.connect


@pytest.fixture(params=TRANSPORTS)
def open_transport(request: pytest.FixtureRequest) -> Connect:
    """Bus connections without users or permissions (in memory or to the open server), for
    tests of the bus itself on arbitrary subjects."""
    if request.param == "memory":
        return memory_connect()
    url = request.getfixturevalue("nats_url")

    async def to_nats(name: str) -> Bus:
        return await connect(NatsOptions(url, name))

    return to_nats
