"""A service acting for a component another service leads (``--act``; docs/architecture.md, "The
balancer's decisions beside the instances"): it steps the component on the run's path, its
leader steps the same windows behind it, checked, and nothing a component sees changes. On the
in-memory bus and on a real nats-server."""

from __future__ import annotations

import asyncio

import pytest
from service_builders import Connect, host, same_as_local, start_services
from test_services import FAN, SkewedFactory

from llmtwin.cluster.run import run_scenario
from llmtwin.errors import ServiceFailure
from llmtwin.report.writers import requests_csv
from llmtwin.scenario.loader import load_scenario
from llmtwin.sim.windows import WindowPlanner
from proto.control import Ready, RunConfig, RunRequest, RunSpec
from services.cluster import ClusterFactory
from services.pacing import Pacer
from services.run_state import RunState

pytestmark = pytest.mark.timeout(60)

ACTING = (host("h1", "ping,source,sink,worker-*", act="worker-1"), host("h2", "worker-1"))
"""h1 acts for worker-1, which h2 leads (and hosts nothing else)."""


async def test_a_leader_steps_behind_the_service_acting_for_it(transport: Connect) -> None:
    """LocalRunner's exports, windows and messages; the leader steps every window of its
    component but publishes nothing (the actor's went out)."""
    svc = await start_services(transport, ACTING)
    try:
        out = await asyncio.wait_for(svc.run(FAN), 20)
    finally:
        await svc.stop()
    same_as_local(out, FAN)
    leader = svc.registry("h2")
    assert leader.get_sample_value("twin_host_envelopes_total", {"direction": "out"}) == 0.0
    assert (leader.get_sample_value("twin_host_steps_total") or 0) > 0


async def test_a_leader_that_would_diverge_from_its_actor_fails_the_run(transport: Connect) -> None:
    """h2 builds worker-1 sending elsewhere: its step behind h1 is caught by the digest check,
    and the run fails naming h2."""
    svc = await start_services(transport, ACTING[:1])
    try:
        await svc.add_host(ACTING[1], {"toy": SkewedFactory()})
        with pytest.raises(
            ServiceFailure, match=r"\(h2\).*worker-1 diverged .* from the service acting for it"
        ):
            await asyncio.wait_for(svc.run(FAN), 20)
    finally:
        await svc.stop()


async def test_a_device_acting_for_the_balancer_takes_the_dispatches_off_the_round_trips(
    transport: Connect,
) -> None:
    """One device service acting for the balancer: the in-process requests.csv, in a few rounds
    per generator chunk instead of two per request (docs/performance.md)."""
    spec = RunSpec("cluster", "demo", ("workload.requests=300",), "colocated")
    hosts = (
        host("generator", role="generator"),
        host("balancer", role="balancer"),
        host("device-1", role="device", shard="1/1", act="balancer"),
    )
    svc = await start_services(transport, hosts)
    try:
        out = await asyncio.wait_for(svc.run(spec), 60)
    finally:
        await svc.stop()
    scenario = load_scenario("demo", ["workload.requests=300"], "colocated")
    want = requests_csv(run_scenario(scenario), scenario.slo)
    assert requests_csv(ClusterFactory().result(spec, out), scenario.slo) == want
    assert out.stats["rounds"] < out.stats["windows"] / 20


def _state() -> RunState:
    spec = RunSpec("toy", "pingpong")
    config = RunConfig("r", spec, "s" * 64, "c" * 64)
    return RunState(
        RunRequest("r", spec), config, ["ping", "pong"], WindowPlanner(["ping", "pong"]), Pacer(1.0)
    )


def test_a_component_has_one_actor_and_no_followers_beside_it() -> None:
    """Two services acting for one component, or an actor beside a follower, fail the run at
    set-up, naming the service."""
    state = _state()
    state.join(Ready("r", "h1", ["ping", "pong"], [], "", "s" * 64, "c" * 64))
    state.join(Ready("r", "h2", [], [], "", "s" * 64, "c" * 64, acting=["pong"]))
    state.join(Ready("r", "h3", [], [], "", "s" * 64, "c" * 64, acting=["pong"]))
    assert state.failure is not None
    assert state.failure.service == "h3"
    state = _state()
    state.join(Ready("r", "h1", ["ping", "pong"], [], "", "s" * 64, "c" * 64))
    state.join(Ready("r", "h2", [], ["pong"], "", "s" * 64, "c" * 64))
    state.join(Ready("r", "h3", [], [], "", "s" * 64, "c" * 64, acting=["pong"]))
    state.fix_hosts()
    assert state.failure is not None
    assert "followers and a service acting for it" in state.failure.message
