"""A whole set of services inside one process, each on its own bus connection.

For tests and the benchmark: the same service classes as the separate processes of
``llmtwin up``, on a real nats-server or a :class:`~services.memory.MemoryBroker`. Each service
has its own connection, so the protocol sees exactly what it would see across processes
(NATS keeps order only per connection).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

from proto.codec import Codec
from proto.control import RunOutcome, RunRequest, RunSpec
from services.base import Service
from services.bus import Bus
from services.client import ProgressCallback, RunClient
from services.conductor import Conductor
from services.factory import Factory
from services.host import HostService
from services.planner import PlannerService
from services.registry import factories
from services.selection import Selector

Connect = Callable[[str], Awaitable[Bus]]
"""Opens one bus connection for the named service."""


@dataclass(slots=True)
class Ensemble:
    """Started services plus a client to drive runs."""

    conductor: Conductor
    hosts: list[HostService]
    planner: PlannerService | None
    client: RunClient
    client_bus: Bus
    registries: dict[str, CollectorRegistry] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def services(self) -> list[Service]:
        extra: list[Service] = [self.planner] if self.planner is not None else []
        return [self.conductor, *self.hosts, *extra]

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

    async def stop(self) -> None:
        await self.client.close()
        for svc in reversed(self.services):
            await svc.stop()
        await self.client_bus.drain()


async def start_ensemble(
    connect: Connect,
    hosts: Mapping[str, Selector],
    *,
    codec: Codec | None = None,
    known: Mapping[str, Factory] | None = None,
    planner: bool = False,
    conductor_options: Mapping[str, Any] | None = None,
    host_options: Mapping[str, Any] | None = None,
    http: bool = False,
) -> Ensemble:
    """Start a conductor, one host per ``hosts`` entry (name -> selector), optionally a planner."""
    codec = codec or Codec()
    known = dict(known) if known is not None else factories()
    registries: dict[str, CollectorRegistry] = {}

    def common(name: str) -> dict[str, Any]:
        registries[name] = CollectorRegistry()
        return {
            "registry": registries[name],
            "codec": codec,
            "http_port": 0 if http else None,
            "heartbeat_s": 0.5,
        }

    client_bus = await connect("client")
    client = RunClient(client_bus, codec)
    await client.start()
    conductor = Conductor(
        "conductor",
        await connect("conductor"),
        factories=known,
        **common("conductor"),
        **(conductor_options or {}),
    )
    host_list = [
        HostService(
            name,
            await connect(name),
            role="host",
            selector=sel,
            factories=known,
            **common(name),
            **(host_options or {}),
        )
        for name, sel in hosts.items()
    ]
    plan = (
        PlannerService("planner", await connect("planner"), factories=known, **common("planner"))
        if planner
        else None
    )
    ens = Ensemble(conductor, host_list, plan, client, client_bus, registries)
    for svc in ens.services:
        await svc.start()
    await client.wait_for([s.name for s in ens.services], 10.0)
    return ens
