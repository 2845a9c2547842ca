"""Simulated failures over a real nats-server: the same records as in one process, every policy.

The fault is part of the scenario (here a ``--fault`` override in the run spec), so the services
run it with no change: the failing instance, its partner and the balancer handle it as internal
events and messages of the core components.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmtwin.cluster.run import run_scenario
from llmtwin.report.writers import instances_csv, requests_csv
from llmtwin.runtime.natsd import EmbeddedNats
from llmtwin.scenario.loader import load_scenario
from llmtwin.scenario.overrides import fault_override
from proto.codec import Codec
from proto.control import RunSpec
from services.bus import Bus, connect
from services.cluster import ClusterFactory
from services.ensemble import start_ensemble
from services.selection import for_role

pytestmark = [pytest.mark.nats, pytest.mark.timeout(120)]

OVERRIDES = ("workload.requests=80", fault_override(["engine=1@1.2s,recover=2.4s"]))
"""The demo scenario (4 x H100, 24 req/s): instance 1 fails 1.2 s in, mid-run, and is back at 2.4 s."""


@pytest.fixture(scope="module")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with EmbeddedNats(Path(tmp_path_factory.mktemp("nats"))) as server:
        yield server.url


@pytest.mark.parametrize("policy", ["colocated", "colocated-chunked", "disaggregated", "accellm"])
async def test_a_failure_gives_the_same_records_over_nats(nats_url: str, policy: str) -> None:
    """Byte-identical requests.csv and instances.csv, and the same fault log, in-process and over
    NATS with the instances on two hosts; the failure really hit requests."""

    async def conn(name: str) -> Bus:
        return await connect(nats_url, name)

    hosts = {
        "generator": for_role("generator"),
        "balancer": for_role("balancer"),
        "device-1": for_role("device", shard="1/2"),
        "device-2": for_role("device", shard="2/2"),
    }
    spec = RunSpec("cluster", "demo", OVERRIDES, policy)
    ens = await asyncio.wait_for(start_ensemble(conn, hosts), 20)
    try:
        outcome = await asyncio.wait_for(ens.run(spec), 60)
    finally:
        await ens.stop()
    loaded = load_scenario("demo", OVERRIDES, policy)
    remote = ClusterFactory().result(spec, outcome, Codec())
    local = run_scenario(loaded)
    assert local.faults.affected
    assert remote.faults == local.faults
    assert requests_csv(remote, loaded.slo) == requests_csv(local, loaded.slo)
    assert instances_csv(remote) == instances_csv(local)
