"""The instance engine alone: fast-forwarding, snapshots, block accounting, interruptions."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import ClassVar

import pytest

from llmtwin.cluster.components import Instance
from llmtwin.cluster.cost import Buckets, IterationCost, causal_pairs
from llmtwin.cluster.engine import Engine
from llmtwin.cluster.engine_events import Finished
from llmtwin.cluster.records import RunResult
from llmtwin.cluster.run import assemble_result, build_components, step_model
from llmtwin.cluster.seqs import Job
from llmtwin.physics.graph import BatchShape
from llmtwin.scenario.spec import ClusterSpec, EngineConfig, Scenario, WorkloadSpec
from llmtwin.sim.kernel import INF, Component, Envelope, MessagePriority
from llmtwin.sim.local import LocalRunner
from llmtwin.workload.request import RequestSpec

SCENARIO = Scenario("t", "llama-2-7b", ClusterSpec("h100-sxm", 2), WorkloadSpec(), engine=EngineConfig())


def make_engine(capacity_blocks: int | None = None, cfg: EngineConfig | None = None) -> Engine:
    step = step_model(SCENARIO)
    cfg = cfg or EngineConfig()
    cap = capacity_blocks or step.kv_capacity_tokens() // cfg.block_size_tokens
    return Engine(IterationCost(step, cfg.shape_bucket), cfg, cap)


def load(engine: Engine, n: int, seed: int = 3) -> None:
    rng = random.Random(seed)
    for i in range(n):
        engine.submit(Job(i, 0.0, rng.randint(10, 3000), rng.randint(1, 400), 0))


def test_cutting_the_run_anywhere_gives_the_same_iterations() -> None:
    """Advancing in many small steps commits exactly the iterations of one long advance."""
    a, b = make_engine(), make_engine()
    load(a, 40)
    load(b, 40)
    a.advance(INF)
    t = 0.0
    while b.running or b.waiting:
        t += 0.0137
        b.advance(t)
    assert a.t == b.t
    assert a.it == b.it
    assert [e.time for e in a.events] == [e.time for e in b.events]
    assert a.log.range_rid == b.log.range_rid
    assert a.log.range_last == b.log.range_last


def test_every_block_comes_back() -> None:
    """After all requests finish, the KV cache is entirely free again, preemptions included."""
    e = make_engine(capacity_blocks=3000)
    load(e, 60)
    e.advance(INF)
    assert not e.running
    assert not e.waiting
    assert not e.held
    assert e.free == e.capacity
    assert sum(1 for ev in e.events if isinstance(ev, Finished)) == 60
    assert e.log.preempted_rids  # 3000 blocks cannot hold 60 such requests at once


def test_snapshot_restore_rewinds_state_and_logs() -> None:
    """Restoring a snapshot undoes a projection completely."""
    e = make_engine()
    load(e, 10)
    e.advance(0.05)
    snap = e.snapshot()
    before = (e.t, e.it, e.free, len(e.events), e.log.mark(), dict(e.running))
    e.project()
    assert len(e.events) > before[3]
    e.restore(snap)
    assert (e.t, e.it, e.free, len(e.events), e.log.mark(), dict(e.running)) == before


def test_buckets_bound_the_relative_width() -> None:
    """A bucket spans at most the configured relative width of any value in it."""
    b = Buckets(0.02)
    for x in (0, 1, 127, 128, 129, 5000, 123456, 10**7):
        lo, hi = b.span(x)
        assert lo <= x < hi
        assert hi - lo == 1 or (hi - lo) / x <= 0.02
    assert Buckets(0.0).span(123456) == (123456, 123457)


@dataclass(frozen=True)
class Poke:
    """A message the instances ignore: it only makes them step (restore and re-advance)."""

    n: int
    PRIORITY: ClassVar[MessagePriority] = MessagePriority.TIMER


class Poker(Component):
    """Sends ignorable messages to every instance at random times."""

    def __init__(self, times: list[float], instances: int) -> None:
        super().__init__("poker")
        self.times = sorted(times)
        self.instances = instances
        self.i = 0

    def next_time(self) -> float:
        return self.times[self.i] if self.i < len(self.times) else INF

    def step(self, now: float, inbox: list[Envelope]) -> None:
        for k in range(self.instances):
            self.outbox.send(f"instance-{k}", now, Poke(self.i))
        self.i += 1

    def export(self) -> int:
        return self.i


def _run(components: list[Component]) -> RunResult:
    LocalRunner(components).run()
    parts = {c.id: c.export() for c in components if not isinstance(c, Poker)}
    return assemble_result(SCENARIO, "colocated", parts, 10.0, {})


def test_interrupting_messages_do_not_change_results() -> None:
    """Messages arriving mid-projection (restore + re-advance) leave every record unchanged."""
    rng = random.Random(9)
    reqs = [RequestSpec(i, i * 0.04, rng.randint(10, 3000), rng.randint(1, 300)) for i in range(60)]
    plain = _run(build_components(SCENARIO, reqs))
    pokes = [rng.uniform(0.0, 8.0) for _ in range(400)]
    poked_components = build_components(SCENARIO, reqs)
    poked = _run([*poked_components, Poker(pokes, 2)])
    assert poked.requests == plain.requests
    assert poked.instances == plain.instances
    steps = sum(c.steps for c in poked_components if isinstance(c, Instance))
    assert steps > 400


def test_cached_iteration_times_stay_close_to_the_cost_model() -> None:
    """Bucketed decode and prefill(+decode) step times are within 2% of the cost model's own."""
    big = Scenario(
        "t", "llama-3-70b", ClusterSpec("h100-sxm", 2, tp=4, engine="splitwise-dgx-a100"), WorkloadSpec()
    )
    for s in (SCENARIO, big):
        step = step_model(s)
        cost = IterationCost(step, 0.02)
        rng = random.Random(4)
        for _ in range(150):
            p, n = rng.randint(1, 8000), rng.choice([0, 1, 3, 10, 40, 200])
            ctx = sum(rng.randint(10, 8000) for _ in range(n))
            exact = step.time(BatchShape(p, 1, float(causal_pairs(p, 0)), 0, n, ctx))
            assert cost.mixed(p, 1, causal_pairs(p, 0), 0, n, ctx) == pytest.approx(exact, rel=0.02)
            if n:
                exact = step.time(BatchShape(decode_seqs=n, decode_context_tokens=ctx))
                assert cost.decode(n, ctx) == pytest.approx(exact, rel=0.02)
