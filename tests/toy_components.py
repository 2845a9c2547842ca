"""Toy components that exercise a transport: a ping-pong pair and a fan-out/fan-in set.

Test scaffolding, not part of the twin: the services run them through ``ToyFactory`` (factory
name ``toy``) exactly as they run the twin's own components.

They are pure, deterministic :class:`~llmtwin.sim.kernel.Component` s like the twin's own, with
what makes a transport hard: zero-delay replies (several windows at one virtual time), many
messages for one instant from several senders (the ordering rule decides), internal events
between messages (fast-forwarding), and hand-overs between components of one process. Each
logs every message in the order it handled it, so a transport that changes any component's
inputs gives a different export.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import msgspec

from llmtwin.errors import ConfigurationError
from llmtwin.sim.kernel import INF, Component, Envelope, MessagePriority
from llmtwin.sim.local import LocalRunner
from proto.codec import Codec
from proto.control import RunSpec
from services.factory import PlanFunction, PlanProvider, content_digest


class Ping(msgspec.Struct, frozen=True, tag="twin.v1.toy.ping"):
    """Ping -> pong: the n-th ball."""

    PRIORITY: ClassVar[MessagePriority] = MessagePriority.COMPLETION
    n: int


class Pong(msgspec.Struct, frozen=True, tag="twin.v1.toy.pong"):
    """Pong -> ping: the n-th ball back."""

    PRIORITY: ClassVar[MessagePriority] = MessagePriority.COMPLETION
    n: int


class Work(msgspec.Struct, frozen=True, tag="twin.v1.toy.work"):
    """Source -> worker: a job taking ``size_s`` virtual seconds."""

    PRIORITY: ClassVar[MessagePriority] = MessagePriority.TRANSFER
    job: int
    size_s: float


class Result(msgspec.Struct, frozen=True, tag="twin.v1.toy.result"):
    """Worker -> sink (or worker -> worker, a hand-over): a finished job."""

    PRIORITY: ClassVar[MessagePriority] = MessagePriority.FREE
    job: int
    worker: str
    value: float


class ToyExport(msgspec.Struct, frozen=True, tag="twin.v1.toy.export"):
    """A toy component's results: every message it handled, in handling order."""

    component: str
    log: list[str]
    """``"<time>|<src>|<seq>|<what>"`` per handled message."""
    last_s: float
    """Virtual time passed to ``finish``."""


TOY_TYPES: tuple[type[msgspec.Struct], ...] = (Ping, Pong, Work, Result, ToyExport)
"""What the toys send and export (their factory gives them to the services' codec)."""


class LoggingComponent(Component):
    """A component that records each handled message and exports the record."""

    def __init__(self, cid: str) -> None:
        super().__init__(cid)
        self.log: list[str] = []
        self.last_s = 0.0

    def note(self, now: float, env: Envelope, what: str) -> None:
        self.log.append(f"{now!r}|{env.src}|{env.seq}|{what}")

    def finish(self, now: float) -> None:
        self.last_s = now

    def export(self) -> ToyExport:
        return ToyExport(self.id, list(self.log), self.last_s)


class Pinger(LoggingComponent):
    """Serves ``balls`` pings one after the other; each pong triggers the next ping."""

    def __init__(self, cid: str, peer: str, balls: int) -> None:
        super().__init__(cid)
        self.peer, self.balls = peer, balls
        self.started = False

    def next_time(self) -> float:
        return INF if self.started else 0.0

    def step(self, now: float, inbox: list[Envelope]) -> None:
        if not self.started:
            self.started = True
            self.outbox.send(self.peer, now + 0.5, Ping(0))
        for env in inbox:
            assert isinstance(env.body, Pong)
            n = env.body.n
            self.note(now, env, f"pong {n}")
            if n + 1 < self.balls:
                self.outbox.send(self.peer, now + 0.25 * (1 + n % 3), Ping(n + 1))


class Ponger(LoggingComponent):
    """Answers each ping; every other answer has zero delay (a second window at the same time)."""

    def next_time(self) -> float:
        return INF

    def step(self, now: float, inbox: list[Envelope]) -> None:
        for env in inbox:
            assert isinstance(env.body, Ping)
            n = env.body.n
            self.note(now, env, f"ping {n}")
            self.outbox.send(env.src, now + (0.1 if n % 2 == 0 else 0.0), Pong(n))


class Source(LoggingComponent):
    """Emits ``jobs`` jobs, one every ``period_s``, each to two workers at the same instant."""

    def __init__(self, cid: str, workers: list[str], jobs: int, period_s: float, seed: int) -> None:
        super().__init__(cid)
        self.workers, self.jobs, self.period_s = workers, jobs, period_s
        self.rng = random.Random(seed)
        self.k = 0

    def next_time(self) -> float:
        return self.k * self.period_s if self.k < self.jobs else INF

    def step(self, now: float, inbox: list[Envelope]) -> None:
        while self.k < self.jobs and self.k * self.period_s <= now:
            w = len(self.workers)
            for target in (self.workers[self.k % w], self.workers[(self.k + 1) % w]):
                # Sizes on a 10 ms grid, so that many jobs finish at the same instant.
                size_s = self.rng.randint(1, 8) * 0.01
                self.outbox.send(target, now, Work(self.k, size_s))
            self.k += 1


class Worker(LoggingComponent):
    """Runs jobs one at a time (internal events), reports to the sink, hands some to a peer."""

    def __init__(self, cid: str, sink: str, peer: str) -> None:
        super().__init__(cid)
        self.sink, self.peer = sink, peer
        self.queue: deque[Work] = deque()
        self.busy_until = INF
        self.current: Work | None = None

    def next_time(self) -> float:
        return self.busy_until

    def step(self, now: float, inbox: list[Envelope]) -> None:
        for env in inbox:
            body = env.body
            if isinstance(body, Work):
                self.note(now, env, f"work {body.job}")
                self.queue.append(body)
            elif isinstance(body, Result):
                self.note(now, env, f"handover {body.job}")
                self.outbox.send(self.sink, now + 0.01, Result(body.job, self.id, body.value + 1.0))
        # The planner wakes this worker exactly when its job ends (busy_until), or earlier
        # for a message; jobs last >= 10 ms, so at most one finishes per step.
        if self.current is not None and self.busy_until <= now:
            job = self.current
            self.outbox.send(self.sink, now, Result(job.job, self.id, job.size_s))
            if job.job % 5 == 0:
                self.outbox.send(self.peer, now, Result(job.job, self.id, 0.0))
            self.current, self.busy_until = None, INF
        if self.current is None and self.queue:
            self.current = self.queue.popleft()
            self.busy_until = now + self.current.size_s


class Sink(LoggingComponent):
    """Collects results; its log is the order in which same-time results were handled. It takes
    them silently (it sends nothing and has no events), so the services hold its steps back."""

    def next_time(self) -> float:
        return INF

    def silent_kinds(self) -> tuple[type, ...]:
        return (Result,)

    def step(self, now: float, inbox: list[Envelope]) -> None:
        for env in inbox:
            assert isinstance(env.body, Result)
            self.note(now, env, f"result {env.body.job} from {env.body.worker} = {env.body.value!r}")


class LyingSink(Sink):
    """A sink that claims to take results silently but sets itself a timer on the first one."""

    def __init__(self, cid: str) -> None:
        super().__init__(cid)
        self.timer = INF

    def next_time(self) -> float:
        return self.timer

    def step(self, now: float, inbox: list[Envelope]) -> None:
        super().step(now, inbox)
        self.timer = now + 1.0 if inbox and self.timer == INF else INF


def pingpong(balls: int = 20) -> list[Component]:
    """``ping`` and ``pong`` exchanging ``balls`` balls."""
    return [Pinger("ping", "pong", balls), Ponger("pong")]


def fan(
    workers: int = 4, jobs: int = 40, period_s: float = 0.02, seed: int = 0, liar: bool = False
) -> list[Component]:
    """``source`` -> ``worker-<i>`` -> ``sink``, with hand-overs between neighbouring workers
    (``liar``: a sink that is not as silent as it claims)."""
    names = [f"worker-{i}" for i in range(workers)]
    sink = LyingSink("sink") if liar else Sink("sink")
    comps: list[Component] = [Source("source", names, jobs, period_s, seed), sink]
    for i, name in enumerate(names):
        comps.append(Worker(name, "sink", names[(i + 1) % workers]))
    return comps


def _settings(overrides: tuple[str, ...]) -> dict[str, float]:
    """``("balls=20",)`` -> ``{"balls": 20.0}``."""
    return {key: float(value) for key, _, value in (item.partition("=") for item in overrides)}


class ToyFactory:
    """``pingpong`` (``balls=N``) or ``fan`` (``workers=N jobs=N period_s=X seed=N liar=0|1``)."""

    def build(self, spec: RunSpec, plan_provider: PlanProvider | None = None) -> list[Component]:
        s = _settings(spec.overrides)
        if spec.scenario == "pingpong":
            return pingpong(int(s.get("balls", 20)))
        if spec.scenario == "fan":
            return fan(
                int(s.get("workers", 4)),
                int(s.get("jobs", 40)),
                s.get("period_s", 0.02),
                int(s.get("seed", 0)),
                bool(s.get("liar", 0)),
            )
        raise ConfigurationError(f"unknown toy scenario {spec.scenario!r} (pingpong, fan)")

    def digest(self, spec: RunSpec) -> str:
        return content_digest([spec.scenario, _settings(spec.overrides)])

    def body_types(self) -> Sequence[type[msgspec.Struct]]:
        return TOY_TYPES

    def needs_planner(self, spec: RunSpec) -> bool:
        return False

    def may_block(self, spec: RunSpec, component: str) -> bool:
        return False

    def plan_function(self, spec: RunSpec) -> PlanFunction:
        raise ConfigurationError("toy runs have no PRESERVE plans")


@dataclass(frozen=True, slots=True)
class LocalOutcome:
    """The in-process reference run: its final time, encoded exports and statistics."""

    end_s: float
    parts: dict[str, bytes]
    stats: dict[str, float]


def run_local(spec: RunSpec, factory: ToyFactory | None = None) -> LocalOutcome:
    """Run ``spec`` with LocalRunner; exports encoded exactly as the services encode them."""
    factory = factory or ToyFactory()
    codec = Codec(factory.body_types())
    t0 = time.perf_counter()
    runner = LocalRunner(factory.build(spec))
    end = runner.run()
    parts = {cid: codec.encode(c.export()) for cid, c in sorted(runner.components.items())}
    stats = {
        "wall_s": time.perf_counter() - t0,
        "windows": float(runner.windows),
        "messages": float(runner.messages),
    }
    return LocalOutcome(end, parts, stats)
