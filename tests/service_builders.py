"""Builders shared by the service tests: service configs, a secured nats-server with a user per
test service, and a whole set of services in this process.

The same service classes as the separate processes of ``llmtwin up``, each on its own bus
connection (a :class:`~memory_bus.MemoryBus`, or a nats-py connection to a real nats-server as
its own user with its role's permissions, see the ``transport`` fixture in conftest.py), so the
protocol sees exactly what it would see across processes (NATS keeps order only per
connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import itertools
import json
import math
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memory_bus import MemoryBus
from prometheus_client import CollectorRegistry
from toy_components import ToyFactory, run_local

from llmtwin.runtime.embedded_nats import EmbeddedNats
from llmtwin.runtime.nats_auth import Identity, new_identities, server_config
from proto.control import RunOutcome, RunRequest, RunSpec
from proto.permissions import Permissions
from proto.subjects import inbox_prefix
from services.base import Service
from services.bus import Bus
from services.client import ProgressCallback, RunClient
from services.cluster import ClusterFactory
from services.conductor import Conductor
from services.config import ConductorConfig, HostConfig, PlannerConfig
from services.factory import Factory
from services.host import HostService
from services.nats_bus import NatsBus, NatsOptions, connect
from services.planner import PlannerService

Connect = Callable[[str], Awaitable[Bus]]
"""Opens one bus connection for the named service."""

HEARTBEAT_S = 0.5

TEST_ROLES: dict[str, str] = {
    "conductor": "conductor",
    "client": "controller",
    "planner": "planner",
    "generator": "generator",
    "balancer": "balancer",
    **{f"device-{k}": "device" for k in range(1, 4)},
    **{f"h{k}": "host" for k in range(1, 5)},
}
"""The NATS user of every service name the tests use, and its role."""

FUZZER = "fuzzer"
"""A test user that may publish and subscribe anywhere (to fuzz every subject of a run)."""

EVERYTHING = Permissions(publish=(">",), subscribe=(">",))


@dataclass(slots=True)
class SecureNats:
    """A nats-server admitting one user per :data:`TEST_ROLES` name (plus :data:`FUZZER`)."""

    server: EmbeddedNats
    identities: dict[str, Identity]

    @property
    def url(self) -> str:
        return self.server.url

    def options(self, name: str, **fields: Any) -> NatsOptions:
        """How test service ``name`` connects (its seed, its inbox prefix)."""
        ident = self.identities.get(name)
        if ident is None:
            raise AssertionError(f"no test user {name!r}: add it to service_builders.TEST_ROLES")
        return NatsOptions(self.url, name, inbox_prefix=inbox_prefix(name), nkey_seed=ident.seed, **fields)

    async def connect(self, name: str) -> Bus:
        return await connect(self.options(name))


@contextlib.contextmanager
def start_secure_nats(directory: Path) -> Iterator[SecureNats]:
    ids = {i.name: i for i in new_identities({**TEST_ROLES, FUZZER: "controller"})}
    users = [(i.public_key, EVERYTHING if i.name == FUZZER else i.permissions()) for i in ids.values()]
    with EmbeddedNats(directory, config=server_config(users)) as server:
        yield SecureNats(server, ids)


def host(name: str, components: str = "", role: str = "host", **fields: Any) -> HostConfig:
    """The config of a hosting service without an HTTP endpoint."""
    return HostConfig(
        role=role, name=name, components=components, http_port=-1, heartbeat_s=HEARTBEAT_S, **fields
    )


TOY_SPLIT = (host("h1", "ping,source,sink,worker-0"), host("h2", "pong,worker-[1-9]*"))
"""Two hosts for the toys; worker-0 is on h1 with the source and sink, the other workers on h2."""

CLUSTER_HOSTS = (
    host("generator", role="generator"),
    host("balancer", role="balancer"),
    host("device-1", role="device", shard="1/2", act="balancer"),
    host("device-2", role="device", shard="2/2"),
)
"""The twin's layout in ``llmtwin up`` with two device processes (device-1 acting for the
balancer, which steps behind it)."""

LOCKSTEP_CLUSTER_HOSTS = (*CLUSTER_HOSTS[:2], host("device-1", role="device", shard="1/2"), CLUSTER_HOSTS[3])
"""The same without a service acting for the balancer: every dispatch a round trip."""


def known_factories() -> dict[str, Factory]:
    return {"toy": ToyFactory(), "cluster": ClusterFactory()}


@dataclass(slots=True)
class Services:
    """Started services plus a client to drive runs; ``stop()`` closes every connection."""

    connect: Connect
    factories: Mapping[str, Factory]
    conductor: Conductor
    hosts: dict[str, HostService]
    planner: PlannerService | None
    client: RunClient
    buses: list[Bus]
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def services(self) -> list[Service[Any]]:
        extra: list[Service[Any]] = [self.planner] if self.planner is not None else []
        return [self.conductor, *self.hosts.values(), *extra]

    def registry(self, name: str) -> CollectorRegistry:
        return next(s.registry for s in self.services if s.name == name)

    async def run(
        self,
        spec: RunSpec,
        *,
        speed: float = math.inf,
        until_s: float = math.inf,
        on_progress: ProgressCallback | None = None,
        run_id: str = "",
    ) -> RunOutcome:
        run = run_id or f"run-{next(self._ids)}"
        return await self.client.run(RunRequest(run, spec, speed, until_s), on_progress)

    async def add_host(self, cfg: HostConfig, factories: Mapping[str, Factory] | None = None) -> HostService:
        """Start one more hosting service (e.g. a follower), on its own connection."""
        bus = await self.connect(cfg.service_name)
        self.buses.append(bus)
        svc = HostService(cfg, bus, factories or self.factories)
        await svc.start()
        self.hosts[svc.name] = svc
        await self.client.wait_for([svc.name], 10.0)
        return svc

    async def crash(self, name: str) -> HostConfig:
        """Kill hosting service ``name`` as SIGKILL would: it stops at once, drains nothing,
        answers nothing, its heartbeats stop; its config (to start it again)."""
        svc = self.hosts.pop(name)
        if svc._heartbeat is not None:
            svc._heartbeat.cancel()
        bus = svc.bus
        self.buses.remove(bus)
        if isinstance(bus, MemoryBus):
            bus.kill()
        else:
            assert isinstance(bus, NatsBus)
            await bus.nc.close()
        return svc.cfg

    async def stop(self) -> None:
        await self.client.close()
        for svc in reversed(self.services):
            await svc.stop()
        for bus in self.buses:
            await bus.close()


async def start_services(
    connect: Connect,
    hosts: Sequence[HostConfig],
    *,
    factories: Mapping[str, Factory] | None = None,
    planner: bool = False,
    conductor: Mapping[str, Any] | None = None,
    http: bool = False,
) -> Services:
    """Start a conductor (``conductor``: config fields), the ``hosts``, optionally a planner."""
    known = factories if factories is not None else known_factories()
    port = 0 if http else -1
    buses: list[Bus] = []

    async def bus(name: str) -> Bus:
        buses.append(await connect(name))
        return buses[-1]

    client = RunClient(await bus("client"))
    await client.start()
    ccfg = ConductorConfig(
        role="conductor", name="conductor", http_port=port, heartbeat_s=HEARTBEAT_S, **(conductor or {})
    )
    services = Services(
        connect,
        known,
        Conductor(ccfg, await bus("conductor"), known),
        {
            h.service_name: HostService(
                dataclasses.replace(h, http_port=port), await bus(h.service_name), known
            )
            for h in hosts
        },
        None,
        client,
        buses,
    )
    if planner:
        pcfg = PlannerConfig(role="planner", name="planner", http_port=port, heartbeat_s=HEARTBEAT_S)
        services.planner = PlannerService(pcfg, await bus("planner"), known)
    for svc in services.services:
        await svc.start()
    await client.wait_for([s.name for s in services.services], 10.0)
    return services


async def run_once(
    connect: Connect, hosts: Sequence[HostConfig], spec: RunSpec, timeout_s: float = 20.0
) -> RunOutcome:
    """One run of ``spec`` on a conductor and ``hosts``; the services are stopped before returning."""
    svc = await start_services(connect, hosts)
    try:
        return await asyncio.wait_for(svc.run(spec), timeout_s)
    finally:
        await svc.stop()


async def run_cluster(
    connect: Connect, spec: RunSpec, *, planner: bool = False
) -> tuple[RunOutcome, Services]:
    """One run of the twin on :data:`CLUSTER_HOSTS` (and a planner); the services are stopped
    before returning, their registries still readable."""
    svc = await asyncio.wait_for(start_services(connect, CLUSTER_HOSTS, planner=planner), 30)
    try:
        return await asyncio.wait_for(svc.run(spec), 120), svc
    finally:
        await svc.stop()


# -- the golden run ------------------------------------------------------------------------------

GOLDEN = Path(__file__).parent / "golden" / "digests.json"

GOLDEN_REQUESTS_CSV = {
    case.removeprefix("demo-"): files["requests.csv"]
    for case, files in json.loads(GOLDEN.read_text()).items()
    if case.startswith("demo-")
}
"""sha256 of ``llmtwin simulate demo --policy P``'s requests.csv, per policy."""


def check_golden(policy: str, csv: str, where: str) -> None:
    got = hashlib.sha256(csv.encode()).hexdigest()
    assert got == GOLDEN_REQUESTS_CSV[policy], (
        f"requests.csv of the demo scenario under {policy} ({where}) changed: sha256 {got}. "
        "If this change of results is intended, re-pin with LLMTWIN_UPDATE_GOLDEN=1 "
        ".venv/bin/pytest -q tests/test_report_golden.py and say why in the commit message."
    )


def same_as_local(out: RunOutcome, spec: RunSpec) -> None:
    """A toy run over the services gave LocalRunner's exports, end time, windows and messages."""
    ref = run_local(spec)
    assert {k: bytes(v) for k, v in out.parts.items()} == ref.parts
    assert out.end_s == ref.end_s
    assert (out.stats["windows"], out.stats["messages"]) == (ref.stats["windows"], ref.stats["messages"])
