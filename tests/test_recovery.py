"""Recovery: a host that dies and comes back, a standby that takes over, a server that restarts or
freezes -- and the results do not change (services in this process, on both transports).

A "kill" drops a host at once (``Services.crash``: no drain, no answer, no heartbeat) and a new
one with the same name and config starts (a new process start: a new ``boot``), as ``llmtwin
up``'s supervisor does; tests/test_up.py does the same with real processes and SIGKILL.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from memory_bus import MemoryBroker
from prometheus_client import CollectorRegistry
from service_builders import (
    CLUSTER_HOSTS,
    LOCKSTEP_CLUSTER_HOSTS,
    TOY_SPLIT,
    Connect,
    SecureNats,
    Services,
    check_golden,
    host,
    same_as_local,
    start_secure_nats,
    start_services,
)

from llmtwin.errors import ServiceFailure
from llmtwin.report.writers import requests_csv
from llmtwin.scenario.loader import load_scenario
from proto.control import GrantBatch, RunOutcome, RunSpec
from services.cluster import ClusterFactory
from services.host import HostService
from services.hosted_run import HostedRun

pytestmark = pytest.mark.timeout(90)

FAN = RunSpec("toy", "fan", ("jobs=40",))
PINGPONG = RunSpec("toy", "pingpong", ("balls=40",))


def recoveries(registry: CollectorRegistry, kind: str) -> float:
    return registry.get_sample_value("twin_conductor_recoveries_total", {"kind": kind}) or 0.0


GrantHook = Callable[[HostService, HostedRun, GrantBatch], Awaitable[bool]]
"""Called on a grant before the host handles it; True: the host handles it."""


def on_grant(svc: HostService, window: int, hook: GrantHook, nth: int = 1) -> asyncio.Event:
    """Run ``hook`` once, on ``svc``'s ``nth`` grant for ``window`` or later; set when it ran."""
    original = svc._on_grant
    fired = asyncio.Event()
    seen = [0]

    async def wrapped(state: HostedRun, grant: GrantBatch) -> None:
        seen[0] += grant.window >= window
        if seen[0] >= nth and not fired.is_set():
            fired.set()
            if not await hook(svc, state, grant):
                return
        await original(state, grant)

    svc._on_grant = wrapped  # type: ignore[method-assign]
    return fired


async def run_hooked(
    svc: Services, victim: str, window: int, hook: GrantHook, spec: RunSpec = FAN, nth: int = 1
) -> RunOutcome:
    """Run ``spec`` with ``hook`` on ``victim``'s ``nth`` grant from ``window`` on; the services
    are stopped afterwards (their registries still readable)."""
    try:
        fired = on_grant(svc.hosts[victim], window, hook, nth)
        out = await asyncio.wait_for(svc.run(spec), 80)
        assert fired.is_set()
        return out
    finally:
        await svc.stop()


def kill_and_restart(services: Services, answered: bool) -> GrantHook:
    """A hook that kills the host (after answering the grant, or before) and starts it again."""

    async def hook(svc: HostService, state: HostedRun, grant: GrantBatch) -> bool:
        async def crash_and_restart() -> None:
            cfg = await services.crash(svc.name)
            await services.add_host(cfg)

        if answered:
            await svc.__class__._on_grant(svc, state, grant)
        asyncio.get_running_loop().create_task(crash_and_restart())
        return False

    return hook


@pytest.mark.parametrize("answered", [False, True], ids=["before-answering", "after-answering"])
@pytest.mark.parametrize("victim", ["h1", "h2"])
async def test_a_killed_host_catches_up_and_the_results_do_not_change(
    transport: Connect, victim: str, answered: bool
) -> None:
    """Killed in window 12 (before or after its answer), started again: it replays windows
    1..k in-process, rejoins, and the run ends with LocalRunner's exports, windows and messages."""
    svc = await start_services(transport, TOY_SPLIT)
    out = await run_hooked(svc, victim, 12, kill_and_restart(svc, answered))
    same_as_local(out, FAN)
    assert recoveries(svc.registry("conductor"), "rejoin") == 1.0
    assert out.stats["restarts"] == 1.0


@pytest.mark.parametrize(
    ("victim", "nth", "answered", "lockstep"),
    [
        ("generator", 1, True, False),
        ("balancer", 2, False, False),  # behind device-1: a grant per batch of its steps
        ("device-1", 150, False, False),  # acting for the balancer
        ("device-2", 150, False, False),
        ("balancer", 150, False, True),  # no service acting for it: a grant per dispatch
    ],
    ids=["generator", "balancer-behind", "device-1-acting", "device-2", "balancer-lockstep"],
)
async def test_a_killed_twin_service_gives_the_golden_requests_csv(
    transport: Connect, victim: str, nth: int, answered: bool, lockstep: bool
) -> None:
    """The demo scenario (colocated) with a generator, balancer or device process killed at its
    ``nth`` grant (the generator has one: it sends every arrival at once) and started again:
    requests.csv is still the golden one. With device-1 acting for the balancer (``up``'s
    layout), and without."""
    spec = RunSpec("cluster", "demo", (), "colocated")
    svc = await start_services(transport, LOCKSTEP_CLUSTER_HOSTS if lockstep else CLUSTER_HOSTS)
    outcome = await run_hooked(svc, victim, 1, kill_and_restart(svc, answered), spec, nth)
    assert recoveries(svc.registry("conductor"), "rejoin") == 1.0
    scenario = load_scenario("demo", (), "colocated")
    remote = ClusterFactory().result(spec, outcome)
    check_golden("colocated", requests_csv(remote, scenario.slo), f"{victim} killed and restarted")


async def test_a_standby_takes_over_from_a_dead_leader_without_a_restart(transport: Connect) -> None:
    """h3 follows the workers h2 leads; h2 dies for good: within dead_after_s h3 leads them, the
    open window is re-issued to it, and the results are LocalRunner's."""
    hosts = [host("h1", "ping,source,sink,worker-0"), host("h2", "worker-[1-9]*")]
    svc = await start_services(transport, hosts, conductor={"dead_after_s": 1.5})
    await svc.add_host(host("h3", role="device", follow="worker-[1-9]*"))

    async def die(s: HostService, state: HostedRun, grant: GrantBatch) -> bool:
        await svc.crash(s.name)
        return False

    out = await run_hooked(svc, "h2", 10, die)
    same_as_local(out, FAN)
    assert recoveries(svc.registry("conductor"), "failover") >= 1.0
    assert (svc.registry("h3").get_sample_value("twin_host_envelopes_total", {"direction": "out"}) or 0) > 0


async def test_a_dead_host_that_never_comes_back_fails_the_run_by_name(transport: Connect) -> None:
    """No supervisor, no standby: after rejoin_timeout_s the run fails naming the host."""
    svc = await start_services(transport, TOY_SPLIT, conductor={"dead_after_s": 1.0, "rejoin_timeout_s": 1.0})

    async def die(s: HostService, state: HostedRun, grant: GrantBatch) -> bool:
        await svc.crash(s.name)
        return False

    try:
        on_grant(svc.hosts["h2"], 5, die)
        with pytest.raises(
            ServiceFailure, match=r"\(h2\): h2 stopped answering .* did not come back within 1 s"
        ):
            await asyncio.wait_for(svc.run(PINGPONG), 30)
    finally:
        await svc.stop()


async def test_messages_lost_in_a_server_restart_are_sent_again() -> None:
    """In-memory: the "server" restarts right after h2 answered window 9 (the answer is lost),
    every connection is told it reconnected; the window is re-issued, h2 answers from what it
    kept (it does not step twice), and the results do not change."""
    broker = MemoryBroker()

    async def connect(name: str) -> Any:
        return broker.connect(name)

    async def answer_then_restart(s: HostService, state: HostedRun, grant: GrantBatch) -> bool:
        await HostService._on_grant(s, state, grant)
        await broker.restart()
        return False

    svc = await start_services(connect, TOY_SPLIT)
    out = await run_hooked(svc, "h2", 9, answer_then_restart)
    same_as_local(out, FAN)
    assert recoveries(svc.registry("conductor"), "reissue") >= 1.0


@pytest.fixture
def private_nats(tmp_path: Path) -> Any:
    """A secured nats-server of this test only (to kill or freeze it)."""
    with start_secure_nats(tmp_path / "nats") as server:
        yield server


@pytest.mark.nats
async def test_a_killed_nats_server_restarted_on_its_port_changes_nothing(private_nats: SecureNats) -> None:
    """SIGKILL of nats-server right after h2 answered window 9, started again on the same port:
    every service reconnects, what was lost is sent again, LocalRunner's results."""
    server = private_nats.server

    async def answer_then_kill(s: HostService, state: HostedRun, grant: GrantBatch) -> bool:
        await HostService._on_grant(s, state, grant)
        assert server.proc is not None
        server.proc.kill()
        await asyncio.to_thread(server.restart)
        return False

    svc = await start_services(private_nats.connect, TOY_SPLIT)
    out = await run_hooked(svc, "h2", 9, answer_then_kill)
    same_as_local(out, FAN)
    assert (svc.registry("conductor").get_sample_value("twin_bus_reconnects_total") or 0) >= 1


@pytest.mark.nats
async def test_a_frozen_nats_server_is_nobodys_fault_and_the_run_goes_on(private_nats: SecureNats) -> None:
    """nats-server stopped (SIGSTOP) for three times dead_after_s mid-run: the conductor finds
    the server not answering and blames no service (one blamed would fail the run at once:
    rejoin_timeout_s = 0), and the run ends with LocalRunner's results once it answers again."""
    server = private_nats.server
    assert server.proc is not None
    pid = server.proc.pid
    conductor = {"dead_after_s": 1.0, "rejoin_timeout_s": 0}

    async def freeze(s: HostService, state: HostedRun, grant: GrantBatch) -> bool:
        os.kill(pid, signal.SIGSTOP)
        asyncio.get_running_loop().call_later(3.0, os.kill, pid, signal.SIGCONT)
        return True

    svc = await start_services(private_nats.connect, TOY_SPLIT, conductor=conductor)
    try:
        out = await run_hooked(svc, "h2", 9, freeze)
    finally:
        os.kill(pid, signal.SIGCONT)
    same_as_local(out, FAN)


@pytest.mark.nats
async def test_a_server_that_never_answers_again_fails_the_run_saying_so(private_nats: SecureNats) -> None:
    """nats-server frozen for good: the controller gives up after its server timeout with
    "nats-server ... not answering", naming no service."""
    server = private_nats.server
    assert server.proc is not None
    pid = server.proc.pid
    svc = await start_services(private_nats.connect, TOY_SPLIT, conductor={"dead_after_s": 1.0})
    svc.client.server_timeout_s = 2.0
    try:

        async def freeze(s: HostService, state: HostedRun, grant: GrantBatch) -> bool:
            os.kill(pid, signal.SIGSTOP)
            return True

        on_grant(svc.hosts["h2"], 5, freeze)
        with pytest.raises(
            ServiceFailure, match=r"nats-server at nats://127\.0\.0\.1:\d+ not answering for \d+ s"
        ):
            await asyncio.wait_for(svc.run(FAN), 40)
    finally:
        os.kill(pid, signal.SIGCONT)
        await svc.stop()
