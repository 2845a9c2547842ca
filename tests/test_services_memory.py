"""The services on the in-memory bus: same results as LocalRunner, failures named, lifecycle, metrics."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Mapping

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from llmtwin.errors import ServiceFailure
from llmtwin.sim.kernel import Component, Envelope
from llmtwin.sim.windows import WindowPlanner
from proto import subjects
from proto.codec import Codec
from proto.control import PlanReply, PlanRequest, Progress, Reply, RunRequest, RunSpec
from services.ensemble import Ensemble, start_ensemble
from services.factory import Factory, PlanProvider, ToyFactory, run_local
from services.host import HostService
from services.memory import MemoryBroker
from services.registry import factories
from services.selection import Selector
from services.toy import Worker, fan

pytestmark = pytest.mark.timeout(30)

SPLIT = {
    "h1": Selector(lead=("ping", "source", "sink", "worker-0")),
    "h2": Selector(lead=("pong", "worker-[1-9]*")),
}
"""Two hosts; worker-0 is on h1 with the source and sink, the other workers on h2."""


def memory(broker: MemoryBroker):  # type: ignore[no-untyped-def]
    async def connect(name: str):  # type: ignore[no-untyped-def]
        return broker.connect(name)

    return connect


@pytest.fixture
async def ensemble() -> AsyncIterator[Ensemble]:
    ens = await start_ensemble(memory(MemoryBroker()), SPLIT)
    yield ens
    await ens.stop()


@pytest.fixture
async def ensemble_with_planner() -> AsyncIterator[Ensemble]:
    ens = await start_ensemble(memory(MemoryBroker()), SPLIT, planner=True)
    yield ens
    await ens.stop()


def rejected(registry: CollectorRegistry, reason: str) -> float:
    return registry.get_sample_value("twin_bus_rejected_total", {"reason": reason}) or 0.0


@pytest.mark.parametrize("seed", [None, 1, 2])
@pytest.mark.parametrize(
    "spec", [RunSpec("toy", "pingpong", ("balls=30",)), RunSpec("toy", "fan", ("jobs=30",))]
)
async def test_toy_runs_match_local_runner_even_when_the_bus_reorders(
    spec: RunSpec, seed: int | None
) -> None:
    """Exports, end time, windows and messages equal LocalRunner's, with and without reordering."""
    ens = await start_ensemble(memory(MemoryBroker(reorder_seed=seed)), SPLIT)
    try:
        out = await asyncio.wait_for(ens.run(spec), 20)
    finally:
        await ens.stop()
    ref = run_local(ToyFactory(), spec, Codec())
    assert {k: bytes(v) for k, v in out.parts.items()} == ref.parts
    assert out.end_s == ref.end_s
    assert (out.stats["windows"], out.stats["messages"]) == (ref.stats["windows"], ref.stats["messages"])


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
    codec = Codec()
    ref = run_local(ToyFactory(), RunSpec("toy", "fan", ("jobs=30",)), codec)
    assert codec.encode(comps["sink"].export()) != ref.parts["sink"]  # type: ignore[attr-defined]


async def test_results_bigger_than_max_payload_arrive_in_chunks() -> None:
    """With a 2 KiB message limit the exports and the outcome travel in chunks and still match."""
    spec = RunSpec("toy", "fan", ("jobs=60",))
    ens = await start_ensemble(memory(MemoryBroker(max_payload=2048)), SPLIT)
    try:
        out = await asyncio.wait_for(ens.run(spec), 20)
    finally:
        await ens.stop()
    ref = run_local(ToyFactory(), spec, Codec())
    assert sum(len(p) for p in ref.parts.values()) > 4 * 2048
    assert {k: bytes(v) for k, v in out.parts.items()} == ref.parts


class SkewedFactory(ToyFactory):
    """The fan toy, except that worker-1 answers with a different value: a diverging replica."""

    def build(self, spec: RunSpec, plan_provider: PlanProvider | None = None) -> list[Component]:
        comps = super().build(spec, plan_provider)
        for c in comps:
            if isinstance(c, Worker) and c.id == "worker-1":
                c.sink = "worker-2"  # sends to another destination than the leader's copy
        return comps


async def _with_follower(follower_factories: Mapping[str, Factory]) -> tuple[Ensemble, HostService]:
    broker = MemoryBroker()
    ens = await start_ensemble(memory(broker), {"h1": Selector(lead=("*",))})
    follower = HostService(
        "h2",
        broker.connect("h2"),
        role="device",
        selector=Selector(follow=("worker-1",)),
        factories=follower_factories,
        registry=CollectorRegistry(),
        codec=Codec(),
        http_port=None,
    )
    await follower.start()
    return ens, follower


async def test_a_follower_replica_steps_in_lockstep_without_publishing() -> None:
    """A follower of worker-1 gets every grant, publishes nothing, and the results are unchanged."""
    spec = RunSpec("toy", "fan", ("jobs=20",))
    ens, follower = await _with_follower(factories())
    try:
        out = await asyncio.wait_for(ens.run(spec), 20)
    finally:
        await follower.stop()
        await ens.stop()
    assert {k: bytes(v) for k, v in out.parts.items()} == run_local(ToyFactory(), spec, Codec()).parts
    assert follower.registry.get_sample_value("twin_host_envelopes_total", {"direction": "out"}) == 0.0
    assert (follower.registry.get_sample_value("twin_host_steps_total") or 0) > 0


async def test_a_diverging_follower_fails_the_run() -> None:
    """A replica that would send something else than its leader is caught by the digest check."""
    ens, follower = await _with_follower({"toy": SkewedFactory()})
    try:
        with pytest.raises(ServiceFailure, match=r"\(h2\).*replica of worker-1 on h2 diverged"):
            await asyncio.wait_for(ens.run(RunSpec("toy", "fan", ("jobs=20",))), 20)
    finally:
        await follower.stop()
        await ens.stop()


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


async def test_a_failing_component_fails_the_run_with_a_message_naming_it() -> None:
    """An exception in a step ends the run with the service and the error; the services live on."""
    ens = await start_ensemble(memory(MemoryBroker()), SPLIT, known={"toy": ExplodingFactory()})
    try:
        with pytest.raises(ServiceFailure, match=r"failed \(h2\): h2: .*ball 3 is cursed"):
            await asyncio.wait_for(ens.run(RunSpec("toy", "pingpong")), 20)
        assert ens.conductor.active is None
        assert not ens.hosts[1].runs
        assert (
            ens.conductor.registry.get_sample_value("twin_conductor_runs_total", {"outcome": "failed"}) == 1.0
        )
    finally:
        await ens.stop()


async def test_a_component_without_a_host_fails_the_run_after_the_ready_timeout() -> None:
    """If no service hosts ``pong``, the run fails saying so."""
    hosts = {"h1": Selector(lead=("ping",))}
    ens = await start_ensemble(memory(MemoryBroker()), hosts, conductor_options={"ready_timeout_s": 0.3})
    try:
        with pytest.raises(ServiceFailure, match="no service hosts pong"):
            await asyncio.wait_for(ens.run(RunSpec("toy", "pingpong")), 10)
    finally:
        await ens.stop()


async def test_a_service_that_goes_silent_is_declared_dead() -> None:
    """A host stopped mid-run (no heartbeat, no Done) fails the run with its name, within dead_after_s."""
    ens = await start_ensemble(memory(MemoryBroker()), SPLIT, conductor_options={"dead_after_s": 0.6})
    stopped = asyncio.Event()

    def on_progress(p: Progress) -> None:
        if p.window > 5 and not stopped.is_set():
            stopped.set()
            asyncio.get_running_loop().create_task(ens.hosts[1].stop())

    try:
        with pytest.raises(ServiceFailure, match=r"\(h2\): h2 stopped answering"):
            await asyncio.wait_for(
                ens.run(RunSpec("toy", "pingpong", ("balls=400",)), speed=50.0, on_progress=on_progress), 10
            )
    finally:
        await ens.stop()


async def test_malformed_messages_are_rejected_counted_and_harmless(ensemble: Ensemble) -> None:
    """Garbage on a control subject and a bad request are counted; the request gets an error reply; runs go on."""
    bus = ensemble.client_bus
    await bus.publish(subjects.hello(), b"\xc1 not msgpack")
    await bus.publish(subjects.config(), b"\x93\x01\x02\x03")
    data = await bus.request(subjects.run_start(), b"\x80", 2.0)
    reply = Codec().decode(data, Reply)
    assert not reply.ok
    assert "malformed RunRequest" in reply.error
    out = await asyncio.wait_for(ensemble.run(RunSpec("toy", "pingpong", ("balls=5",))), 10)
    assert out.parts
    assert rejected(ensemble.registries["conductor"], "malformed") == 2.0
    assert rejected(ensemble.registries["h1"], "malformed") == 1.0
    assert rejected(ensemble.registries["h2"], "malformed") == 1.0


async def test_a_second_run_is_refused_while_one_is_in_progress(ensemble: Ensemble) -> None:
    """One run at a time: the conductor refuses another and says which run is in progress."""
    first = asyncio.ensure_future(
        ensemble.run(RunSpec("toy", "pingpong", ("balls=40",)), speed=100.0, run_id="one")
    )
    await asyncio.sleep(0)
    while ensemble.conductor.active is None:
        await asyncio.sleep(0.01)
    with pytest.raises(ServiceFailure, match="run one is in progress"):
        await ensemble.client.run(RunRequest("two", RunSpec("toy", "pingpong")))
    await ensemble.client.control("one", "stop")
    out = await asyncio.wait_for(first, 10)
    assert out.stats["stopped"] == 1.0


async def test_pacing_pause_resume_and_stop(ensemble: Ensemble) -> None:
    """At --speed 20 wall time follows virtual time; pause holds the run, stop ends it early with results."""
    seen: list[Progress] = []
    paused = asyncio.Event()

    def on_progress(p: Progress) -> None:
        seen.append(p)
        if p.paused:
            paused.set()

    spec = RunSpec("toy", "pingpong", ("balls=400",))
    task = asyncio.ensure_future(ensemble.run(spec, speed=20.0, on_progress=on_progress, run_id="paced"))
    while not seen:
        await asyncio.sleep(0.02)
    await ensemble.client.control("paced", "pause")
    await asyncio.wait_for(paused.wait(), 5)
    window_at_pause = ensemble.conductor.active.window  # type: ignore[union-attr]
    await asyncio.sleep(0.3)
    assert ensemble.conductor.active.window == window_at_pause  # type: ignore[union-attr]
    await ensemble.client.control("paced", "resume")
    await asyncio.sleep(0.3)
    await ensemble.client.control("paced", "stop")
    out = await asyncio.wait_for(task, 10)
    assert out.stats["stopped"] == 1.0
    assert 0 < out.end_s < run_local(ToyFactory(), spec, Codec()).end_s
    # Paced: virtual time never runs ahead of wall time x speed (pauses excluded).
    assert all(p.time_s <= (p.wall_s + 0.05) * 20.0 for p in seen if not p.paused)
    assert set(out.parts) == {"ping", "pong"}


async def test_metrics_and_healthz_endpoints() -> None:
    """Each service serves /healthz (200 when ready) and Prometheus /metrics on its own port."""
    ens = await start_ensemble(memory(MemoryBroker()), SPLIT, http=True)
    try:
        await asyncio.wait_for(ens.run(RunSpec("toy", "pingpong", ("balls=5",))), 10)
        ports = {s.name: s.http.port for s in ens.services if s.http is not None}
        assert len(set(ports.values())) == len(ens.services)
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
    finally:
        await ens.stop()


async def test_stop_is_idempotent_and_sets_stopped() -> None:
    """stop() twice is fine; the stopped event is set and /healthz would report stopped."""
    ens = await start_ensemble(memory(MemoryBroker()), SPLIT)
    host = ens.hosts[0]
    await host.stop()
    await host.stop()
    assert host.stopped.is_set()
    assert host.health()["status"] == "stopped"
    await ens.stop()
    assert all(s.stopped.is_set() for s in ens.services)
    assert math.isinf(RunRequest("r", RunSpec()).speed)


def test_window_planner_is_deterministic_for_the_toys() -> None:
    """Two local runs of the same toy give the same bytes (the reference is stable)."""
    codec = Codec()
    spec = RunSpec("toy", "fan", ("jobs=25", "seed=4"))
    assert run_local(ToyFactory(), spec, codec).parts == run_local(ToyFactory(), spec, codec).parts


async def test_the_planner_answers_errors_without_failing(ensemble_with_planner: Ensemble) -> None:
    """A plan request the planner cannot serve gets an error reply and is counted; the planner lives on."""
    codec = Codec()
    req = PlanRequest(RunSpec("toy", "pingpong"), codec.raw({"decode_seqs": 1}))
    for _ in range(2):
        data = await ensemble_with_planner.client_bus.request(subjects.plan(), codec.encode(req), 5.0)
        assert "toy runs have no PRESERVE plans" in codec.decode(data, PlanReply).error
    reg = ensemble_with_planner.registries["planner"]
    assert reg.get_sample_value("twin_planner_requests_total", {"result": "error"}) == 2.0
    assert ensemble_with_planner.planner is not None
    assert ensemble_with_planner.planner.state == "ready"


async def test_a_window_nobody_answers_fails_the_run_even_if_everyone_is_alive() -> None:
    """A grant lost on the way (here: swallowed by h2, which keeps its heartbeat) fails the run
    after window_timeout_s with a message naming the silent service."""
    ens = await start_ensemble(memory(MemoryBroker()), SPLIT, conductor_options={"window_timeout_s": 0.5})
    swallowed = asyncio.Event()

    async def lose(msg: object) -> None:
        swallowed.set()

    ens.hosts[1]._on_grants = lose  # type: ignore[method-assign]
    try:
        with pytest.raises(ServiceFailure, match=r"\(h2\): no answer from h2 for window 1"):
            await asyncio.wait_for(ens.run(RunSpec("toy", "pingpong", ("balls=5",))), 10)
        assert swallowed.is_set()
    finally:
        await ens.stop()


async def test_pacing_changes_only_wall_time(ensemble: Ensemble) -> None:
    """At --speed 40 the run takes at least virtual time / 40 of wall time and gives the same exports."""
    spec = RunSpec("toy", "pingpong", ("balls=12",))
    out = await asyncio.wait_for(ensemble.run(spec, speed=40.0), 10)
    ref = run_local(ToyFactory(), spec, Codec())
    assert {k: bytes(v) for k, v in out.parts.items()} == ref.parts
    assert out.stats["windows_wall_s"] >= ref.end_s / 40.0
