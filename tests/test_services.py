"""The services, on the in-memory bus and on a real nats-server: same results as LocalRunner,
failures named, lifecycle, metrics."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
from memory_bus import MemoryBroker
from prometheus_client import CollectorRegistry
from service_builders import FUZZER, TOY_SPLIT, Connect, Services, host, same_as_local, start_services
from toy_components import ToyFactory, Worker, fan, run_local

from llmtwin.errors import ServiceFailure
from llmtwin.sim.kernel import Component, Envelope
from llmtwin.sim.windows import WindowPlanner
from proto import subjects
from proto.codec import Codec
from proto.control import (
    GrantBatch,
    PlanReply,
    PlanRequest,
    Progress,
    Ready,
    Reply,
    RunConfig,
    RunRequest,
    RunSpec,
)
from services.bus import Bus
from services.client import RunClient
from services.factory import PlanProvider
from services.pacing import Pacer
from services.run_state import RunState

pytestmark = pytest.mark.timeout(60)

PINGPONG = RunSpec("toy", "pingpong", ("balls=30",))
FAN = RunSpec("toy", "fan", ("jobs=30",))


@pytest.fixture
async def services(transport: Connect) -> AsyncIterator[Services]:
    svc = await asyncio.wait_for(start_services(transport, TOY_SPLIT), 20)
    yield svc
    await svc.stop()


async def until(cond: Callable[[], bool]) -> None:
    while not cond():
        await asyncio.sleep(0.005)


def rejected(registry: CollectorRegistry, reason: str) -> float:
    return registry.get_sample_value("twin_bus_rejected_total", {"reason": reason}) or 0.0


@pytest.mark.parametrize("spec", [PINGPONG, FAN], ids=["pingpong", "fan"])
async def test_toy_runs_match_local_runner(services: Services, spec: RunSpec) -> None:
    """Every service on its own connection: byte-identical exports, same windows and messages."""
    same_as_local(await asyncio.wait_for(services.run(spec), 30), spec)


def memory(broker: MemoryBroker) -> Connect:
    async def connect(name: str) -> Bus:
        return broker.connect(name)

    return connect


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("spec", [PINGPONG, FAN], ids=["pingpong", "fan"])
async def test_toy_runs_match_local_runner_even_when_the_bus_reorders(spec: RunSpec, seed: int) -> None:
    """The in-memory bus delays every delivery at random (NATS never reorders one publisher's
    messages): still LocalRunner's exports, end time, windows and messages."""
    svc = await start_services(memory(MemoryBroker(reorder_seed=seed)), TOY_SPLIT)
    try:
        out = await asyncio.wait_for(svc.run(spec), 20)
    finally:
        await svc.stop()
    same_as_local(out, spec)


def test_the_fan_toy_detects_a_transport_that_uses_arrival_order() -> None:
    """Handing the fan toy its same-time inputs in another order changes its exports (the test has teeth)."""
    comps = {c.id: c for c in fan(jobs=30)}
    planner = WindowPlanner(comps)
    mail: dict[str, list[Envelope]] = {c: [] for c in comps}
    while grants := planner.next_window():
        produced = []
        for g in grants:
            box = sorted(mail[g.component], key=lambda e: e.key)
            inbox, mail[g.component] = box[: g.expect], box[g.expect :]
            comps[g.component].step(g.time, inbox[::-1])  # reversed: not the ordering rule
            sent = comps[g.component].outbox.drain()
            produced.extend(sent)
            planner.report(g.component, comps[g.component].next_time(), [(e.dst, e.time) for e in sent])
        for e in produced:
            mail[e.dst].append(e)
    codec = Codec(ToyFactory().body_types())
    assert codec.encode(comps["sink"].export()) != run_local(FAN).parts["sink"]


async def test_results_bigger_than_max_payload_arrive_in_chunks() -> None:
    """With a 2 KiB message limit the exports and the outcome travel in chunks and still match."""
    spec = RunSpec("toy", "fan", ("jobs=60",))
    svc = await start_services(memory(MemoryBroker(max_payload=2048)), TOY_SPLIT)
    try:
        out = await asyncio.wait_for(svc.run(spec), 20)
    finally:
        await svc.stop()
    ref = run_local(spec)
    assert sum(len(p) for p in ref.parts.values()) > 4 * 2048
    assert {k: bytes(v) for k, v in out.parts.items()} == ref.parts


class SkewedFactory(ToyFactory):
    """The fan toy, except that worker-1 sends to another destination: a diverging replica."""

    def build(self, spec: RunSpec, plan_provider: PlanProvider | None = None) -> list[Component]:
        comps = super().build(spec, plan_provider)
        for c in comps:
            if isinstance(c, Worker) and c.id == "worker-1":
                c.sink = "worker-2"
        return comps


async def test_a_follower_replica_steps_in_lockstep_without_publishing(transport: Connect) -> None:
    """A follower of worker-1 gets every grant, publishes nothing, and the results are unchanged."""
    svc = await start_services(transport, [host("h1", "*")])
    try:
        follower = await svc.add_host(host("h2", role="device", follow="worker-1"))
        out = await asyncio.wait_for(svc.run(FAN), 20)
    finally:
        await svc.stop()
    same_as_local(out, FAN)
    assert follower.registry.get_sample_value("twin_host_envelopes_total", {"direction": "out"}) == 0.0
    assert (follower.registry.get_sample_value("twin_host_steps_total") or 0) > 0


async def test_a_diverging_follower_fails_the_run(transport: Connect) -> None:
    """A replica that would send something else than its leader is caught by the digest check."""
    svc = await start_services(transport, [host("h1", "*")])
    try:
        await svc.add_host(host("h2", role="device", follow="worker-1"), {"toy": SkewedFactory()})
        with pytest.raises(ServiceFailure, match=r"\(h2\).*replica of worker-1 on h2 diverged"):
            await asyncio.wait_for(svc.run(FAN), 20)
    finally:
        await svc.stop()


class OtherBalls(ToyFactory):
    """The same toys, but this host resolves every spec to other contents (a stale file)."""

    def digest(self, spec: RunSpec) -> str:
        return "0" * 64


async def test_a_host_that_resolved_the_run_differently_fails_it_by_name(transport: Connect) -> None:
    """Digest of the resolved run differs on h2: the run fails at set-up, naming h2."""
    svc = await start_services(transport, [host("h1", "ping")])
    try:
        await svc.add_host(host("h2", "pong"), {"toy": OtherBalls()})
        with pytest.raises(ServiceFailure, match=r"\(h2\): h2 resolved run run-0 to other contents"):
            await asyncio.wait_for(svc.run(PINGPONG), 20)
    finally:
        await svc.stop()


def test_a_host_running_other_code_fails_the_run_by_name() -> None:
    """A Ready whose code digest is not the RunConfig's fails the run, naming the host; its
    components are not taken as led."""
    spec = RunSpec("toy", "pingpong")
    config = RunConfig("r", spec, "s" * 64, "c" * 64)
    state = RunState(
        RunRequest("r", spec), config, ["ping", "pong"], WindowPlanner(["ping", "pong"]), Pacer(1.0)
    )
    state.join(Ready("r", "h1", ["ping"], [], "", "s" * 64, "c" * 64))
    state.join(Ready("r", "h2", ["pong"], [], "", "s" * 64, "d" * 64))
    assert state.failure is not None
    assert state.failure.service == "h2"
    assert "h2 runs another installation of the twin" in state.failure.message
    assert state.leaders == {"ping": "h1"}


class ExplodingFactory(ToyFactory):
    """pingpong whose pong raises when it sees ball 3."""

    def build(self, spec: RunSpec, plan_provider: PlanProvider | None = None) -> list[Component]:
        comps = super().build(spec, plan_provider)
        pong = comps[1]
        original = pong.step

        def step(now: float, inbox: list[Envelope]) -> None:
            if any(getattr(e.body, "n", 0) == 3 for e in inbox):
                raise ValueError("ball 3 is cursed")
            original(now, inbox)

        pong.step = step  # type: ignore[method-assign]
        return comps


async def test_a_failing_component_fails_the_run_with_a_message_naming_it(transport: Connect) -> None:
    """An exception in a step ends the run with the service and the error; the services live on."""
    svc = await start_services(transport, TOY_SPLIT, factories={"toy": ExplodingFactory()})
    try:
        with pytest.raises(ServiceFailure, match=r"failed \(h2\): h2: .*ball 3 is cursed"):
            await asyncio.wait_for(svc.run(RunSpec("toy", "pingpong")), 20)
        assert svc.conductor.active is None
        await asyncio.wait_for(until(lambda: not svc.hosts["h2"].runs), 10)  # RunEnd reaches h2
        runs = svc.registry("conductor").get_sample_value("twin_conductor_runs_total", {"outcome": "failed"})
        assert runs == 1.0
    finally:
        await svc.stop()


async def test_a_component_without_a_host_fails_the_run_after_the_ready_timeout(transport: Connect) -> None:
    """If no service hosts ``pong``, the run fails saying so."""
    svc = await start_services(transport, [host("h1", "ping")], conductor={"ready_timeout_s": 0.3})
    try:
        with pytest.raises(ServiceFailure, match="no service hosts pong"):
            await asyncio.wait_for(svc.run(RunSpec("toy", "pingpong")), 10)
    finally:
        await svc.stop()


async def test_a_service_that_goes_silent_is_declared_dead(transport: Connect) -> None:
    """A host stopped mid-run (no heartbeat, no Done) fails the run with its name, within dead_after_s
    (three heartbeats: room for a busy machine), when the conductor is told not to wait for a
    restart (rejoin_timeout_s = 0)."""
    svc = await start_services(transport, TOY_SPLIT, conductor={"dead_after_s": 1.5, "rejoin_timeout_s": 0})
    stopped = asyncio.Event()

    def on_progress(p: Progress) -> None:
        if p.window > 5 and not stopped.is_set():
            stopped.set()
            asyncio.get_running_loop().create_task(svc.hosts["h2"].stop())

    spec = RunSpec("toy", "pingpong", ("balls=400",))
    try:
        with pytest.raises(ServiceFailure, match=r"\(h2\): h2 stopped answering"):
            await asyncio.wait_for(svc.run(spec, speed=50.0, on_progress=on_progress), 20)
    finally:
        await svc.stop()


async def test_malformed_messages_are_rejected_counted_and_harmless(services: Services) -> None:
    """Garbage on control subjects, a grant for an unknown run and a bad request are counted; the
    request gets an error reply; runs go on. (Sent by a user allowed everywhere: the server
    keeps every other one off these subjects, see test_permissions.py.)"""
    bus = await services.connect(FUZZER)
    services.buses.append(bus)
    await bus.publish(subjects.hello("client"), b"\xc1 not msgpack")
    await bus.publish(subjects.config(), b"\x93\x01\x02\x03")
    await bus.publish(subjects.config(), Codec().encode(GrantBatch("x", 1, 0.0, ["a"], [0])))
    data = await bus.request(subjects.run_start(), b"\x80", 5.0)
    reply = Codec().decode(data, Reply)
    assert not reply.ok
    assert "malformed RunRequest" in reply.error
    await bus.flush()
    out = await asyncio.wait_for(services.run(RunSpec("toy", "pingpong", ("balls=5",))), 20)
    assert out.parts
    assert rejected(services.registry("conductor"), "malformed") == 2.0
    assert rejected(services.registry("h1"), "malformed") == 2.0
    assert rejected(services.registry("h2"), "malformed") == 2.0


async def test_a_second_run_is_refused_while_one_is_in_progress(services: Services) -> None:
    """One run at a time: the conductor refuses another and says which run is in progress."""
    first = asyncio.ensure_future(
        services.run(RunSpec("toy", "pingpong", ("balls=40",)), speed=100.0, run_id="one")
    )
    while services.conductor.active is None:
        await asyncio.sleep(0.01)
    with pytest.raises(ServiceFailure, match="run one is in progress"):
        await services.client.run(RunRequest("two", RunSpec("toy", "pingpong")))
    await services.client.control("one", "stop")
    out = await asyncio.wait_for(first, 20)
    assert out.stats["stopped"] == 1.0


async def test_pacing_pause_resume_and_stop(services: Services) -> None:
    """At --speed 20 wall time follows virtual time; pause holds the run, stop ends it early with results."""
    seen: list[Progress] = []
    paused = asyncio.Event()

    def on_progress(p: Progress) -> None:
        seen.append(p)
        if p.paused:
            paused.set()

    spec = RunSpec("toy", "pingpong", ("balls=400",))
    task = asyncio.ensure_future(services.run(spec, speed=20.0, on_progress=on_progress, run_id="paced"))
    while not seen:
        await asyncio.sleep(0.02)
    await services.client.control("paced", "pause")
    await asyncio.wait_for(paused.wait(), 10)
    window_at_pause = services.conductor.active.window  # type: ignore[union-attr]
    await asyncio.sleep(0.3)
    assert services.conductor.active.window == window_at_pause  # type: ignore[union-attr]
    await services.client.control("paced", "resume")
    await asyncio.sleep(0.3)
    await services.client.control("paced", "stop")
    out = await asyncio.wait_for(task, 20)
    assert out.stats["stopped"] == 1.0
    assert out.stopped_by == "controller"  # the client's name
    assert 0 < out.end_s < run_local(spec).end_s
    # Paced: virtual time never runs ahead of wall time x speed (pauses excluded).
    assert all(p.time_s <= (p.wall_s + 0.05) * 20.0 for p in seen if not p.paused)
    assert set(out.parts) == {"ping", "pong"}


async def test_metrics_and_healthz_endpoints(transport: Connect) -> None:
    """Each service serves /healthz (200 when ready) and Prometheus /metrics on its own port."""
    svc = await start_services(transport, TOY_SPLIT, http=True)
    try:
        await asyncio.wait_for(svc.run(RunSpec("toy", "pingpong", ("balls=5",))), 20)
        ports = {s.name: s.http.port for s in svc.services if s.http is not None}
        assert len(set(ports.values())) == len(svc.services)
        assert all(ports.values())
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{ports['conductor']}/healthz") as r:
                assert r.status == 200
                assert (await r.json())["status"] == "ready"
            async with http.get(f"http://127.0.0.1:{ports['conductor']}/metrics") as r:
                text = await r.text()
            assert "twin_conductor_windows_total 11.0" in text
            assert "twin_conductor_realtime_lag_seconds" in text
            async with http.get(f"http://127.0.0.1:{ports['h2']}/metrics") as r:
                assert 'twin_bus_messages_total{direction="in"}' in await r.text()
        # A controller that comes later has missed every hello: the heartbeats tell it the ports.
        late = RunClient(await transport("client"))
        await late.start()
        try:
            await late.wait_for(list(ports), 10.0)
            assert late.ports == ports
        finally:
            await late.close()
    finally:
        await svc.stop()


async def test_stop_is_idempotent_and_leaves_the_connection_to_its_owner(services: Services) -> None:
    """stop() twice is fine; the stopped event is set, /healthz would say stopped, and the
    connection, which the service did not open, still works."""
    h1 = services.hosts["h1"]
    await h1.stop()
    await h1.stop()
    assert h1.stopped.is_set()
    assert h1.health()["status"] == "stopped"
    await h1.bus.flush()
    assert not h1.bus.closed.is_set()
    assert math.isinf(RunRequest("r", RunSpec()).speed)


async def test_the_planner_answers_errors_without_failing(transport: Connect) -> None:
    """A plan request the planner cannot serve gets an error reply and is counted; the planner lives on."""
    svc = await start_services(transport, TOY_SPLIT, planner=True)
    try:
        codec = Codec()
        req = PlanRequest(RunSpec("toy", "pingpong"), codec.raw({"decode_seqs": 1}))
        asker = await svc.connect("h3")  # a host may ask the planner (a controller may not)
        svc.buses.append(asker)
        for _ in range(2):
            data = await asker.request(subjects.plan(), codec.encode(req), 5.0)
            assert "toy runs have no PRESERVE plans" in codec.decode(data, PlanReply).error
        errors = svc.registry("planner").get_sample_value("twin_planner_requests_total", {"result": "error"})
        assert errors == 2.0
        assert svc.planner is not None
        assert svc.planner.state == "ready"
    finally:
        await svc.stop()


async def test_a_window_nobody_answers_fails_the_run_even_if_everyone_is_alive(transport: Connect) -> None:
    """A grant lost on the way (here: swallowed by h2, which keeps its heartbeat) fails the run
    after window_timeout_s with a message naming the silent service."""
    svc = await start_services(transport, TOY_SPLIT, conductor={"window_timeout_s": 1.0})
    swallowed = asyncio.Event()

    async def lose(state: object, grant: object) -> None:
        swallowed.set()

    svc.hosts["h2"]._on_grant = lose  # type: ignore[method-assign]
    try:
        with pytest.raises(ServiceFailure, match=r"\(h2\): no answer from h2 for window 1"):
            await asyncio.wait_for(svc.run(RunSpec("toy", "pingpong", ("balls=5",))), 20)
        assert swallowed.is_set()
    finally:
        await svc.stop()


async def test_pacing_changes_only_wall_time(services: Services) -> None:
    """At --speed 40 the run takes at least virtual time / 40 of wall time and gives the same exports."""
    spec = RunSpec("toy", "pingpong", ("balls=12",))
    out = await asyncio.wait_for(services.run(spec, speed=40.0), 20)
    ref = run_local(spec)
    assert {k: bytes(v) for k, v in out.parts.items()} == ref.parts
    assert out.stats["windows_wall_s"] >= ref.end_s / 40.0
