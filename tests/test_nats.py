"""The services on a real nats-server: same results as LocalRunner, in one process and as processes."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from llmtwin.cluster.run import run_scenario
from llmtwin.report.writers import instances_csv, requests_csv
from llmtwin.runtime.natsd import EmbeddedNats
from llmtwin.runtime.processes import Supervisor
from llmtwin.scenario.loader import load_scenario
from proto import subjects
from proto.codec import Codec
from proto.control import GrantBatch, RunRequest, RunSpec
from services.bus import Bus, NatsBus, connect
from services.client import RunClient
from services.cluster import ClusterFactory
from services.ensemble import Ensemble, start_ensemble
from services.factory import ToyFactory, run_local
from services.selection import Selector, for_role

pytestmark = [pytest.mark.nats, pytest.mark.timeout(60)]

SPLIT = {
    "h1": Selector(lead=("ping", "source", "sink", "worker-0")),
    "h2": Selector(lead=("pong", "worker-[1-9]*")),
}


@pytest.fixture(scope="module")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A nats-server of our own on a free loopback port, for this module."""
    with EmbeddedNats(tmp_path_factory.mktemp("nats")) as server:
        yield server.url


@pytest.fixture
async def ensemble(nats_url: str) -> AsyncIterator[Ensemble]:
    async def conn(name: str) -> Bus:
        return await connect(nats_url, name)

    ens = await asyncio.wait_for(start_ensemble(conn, SPLIT), 20)
    yield ens
    await ens.stop()


@pytest.mark.parametrize(
    "spec", [RunSpec("toy", "pingpong", ("balls=200",)), RunSpec("toy", "fan", ("jobs=150",))]
)
async def test_toy_runs_over_nats_match_local_runner(ensemble: Ensemble, spec: RunSpec) -> None:
    """Every service on its own NATS connection: byte-identical exports, same windows and messages."""
    out = await asyncio.wait_for(ensemble.run(spec), 30)
    ref = run_local(ToyFactory(), spec, Codec())
    assert {k: bytes(v) for k, v in out.parts.items()} == ref.parts
    assert out.end_s == ref.end_s
    assert (out.stats["windows"], out.stats["messages"]) == (ref.stats["windows"], ref.stats["messages"])


async def test_malformed_grant_over_nats_is_counted_and_the_host_keeps_working(ensemble: Ensemble) -> None:
    """Garbage and a grant for an unknown run are rejected by the host, which then runs normally."""
    bus = ensemble.client_bus
    await bus.publish(subjects.grant("nope", "h1"), b"\xc1")
    await bus.publish(subjects.config(), Codec().encode(GrantBatch("x", 1, 0.0, ["a"], [0])))
    await bus.flush()
    out = await asyncio.wait_for(ensemble.run(RunSpec("toy", "pingpong", ("balls=10",))), 20)
    assert set(out.parts) == {"ping", "pong"}
    reg = ensemble.registries["h1"]
    assert reg.get_sample_value("twin_bus_rejected_total", {"reason": "malformed"}) == 1.0


async def test_services_as_processes_run_the_toys_and_stop_cleanly(nats_url: str, tmp_path: Path) -> None:
    """``python -m services`` processes give LocalRunner's results and exit 0 on SIGTERM."""
    sup = Supervisor(tmp_path / "logs")
    py = sys.executable
    base = [py, "-m", "services"]
    bus = await connect(nats_url, "test-client")
    assert isinstance(bus, NatsBus)
    client = RunClient(bus, Codec())
    await client.start()
    try:
        sup.spawn("conductor", [*base, "conductor", "--nats", nats_url, "--name", "pc"])
        sup.spawn(
            "ph1", [*base, "host", "--nats", nats_url, "--name", "ph1", "--components", "ping,source,sink"]
        )
        sup.spawn(
            "ph2", [*base, "host", "--nats", nats_url, "--name", "ph2", "--components", "pong,worker-*"]
        )
        await client.wait_for(["pc", "ph1", "ph2"], 30)
        assert {h.role for h in client.hellos.values()} >= {"conductor", "host"}
        spec = RunSpec("toy", "fan", ("jobs=100", "seed=7"))
        from_bus = await asyncio.wait_for(client.run(RunRequest("proc-1", spec)), 30)
        assert {k: bytes(v) for k, v in from_bus.parts.items()} == run_local(
            ToyFactory(), spec, Codec()
        ).parts
    finally:
        await client.close()
        await bus.drain()
        killed = sup.stop_all(grace_s=10)
    assert killed == []
    assert [c.proc.returncode for c in sup.children] == [0, 0, 0], [c.tail() for c in sup.children]
    assert all(c.proc.returncode != -signal.SIGKILL for c in sup.children)


CLUSTER_CASES = [
    ("demo", ("workload.requests=60",), "colocated"),
    ("demo", ("workload.requests=60",), "disaggregated"),
    ("demo", ("workload.requests=60",), "accellm"),
    (
        "demo",
        ("workload.requests=20", "cluster.tp=2", "cluster.instances=2", "engine.preserve=true"),
        "colocated",
    ),
]


@pytest.mark.parametrize(("scenario", "overrides", "policy"), CLUSTER_CASES, ids=lambda v: str(v))
async def test_cluster_over_nats_gives_the_same_records_as_run_scenario(
    nats_url: str, scenario: str, overrides: tuple[str, ...], policy: str
) -> None:
    """The twin over NATS (devices sharded over two hosts, plans from the planner service):
    byte-identical requests.csv and instances.csv to the in-process run."""

    async def conn(name: str) -> Bus:
        return await connect(nats_url, name)

    hosts = {
        "generator": for_role("generator"),
        "balancer": for_role("balancer"),
        "device-1": for_role("device", shard="1/2"),
        "device-2": for_role("device", shard="2/2"),
    }
    spec = RunSpec("cluster", scenario, overrides, policy)
    ens = await asyncio.wait_for(start_ensemble(conn, hosts, planner=True), 20)
    try:
        outcome = await asyncio.wait_for(ens.run(spec), 60)
        planner_requests = ens.registries["planner"].get_sample_value(
            "twin_planner_requests_total", {"result": "miss"}
        )
    finally:
        await ens.stop()
    loaded = load_scenario(scenario, overrides, policy)
    remote = ClusterFactory().result(spec, outcome, Codec())
    local = run_scenario(loaded)
    assert requests_csv(remote, loaded.slo) == requests_csv(local, loaded.slo)
    assert instances_csv(remote) == instances_csv(local)
    assert outcome.stats["windows"] == local.stats["windows"]
    if loaded.engine.preserve:
        assert (planner_requests or 0) > 0  # the devices really asked the planner service
