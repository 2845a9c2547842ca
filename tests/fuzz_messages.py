"""Bad messages for every subject of a run: random, truncated, of the wrong type or protocol
version, oversized. Shared by tests/test_fuzz.py and bench/bench_fuzz.py (the long run).

Every message made here is invalid where it is sent, so every service subscribed to its
subject must refuse it and count it (``twin_bus_rejected_total{reason}``: malformed or
oversized; a controller's ``RunClient.rejected``), and none may change a run's results.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgpack
import msgspec

from proto import subjects
from proto.codec import Codec
from proto.control import (
    Chunk,
    Collect,
    DoneBatch,
    DoneItem,
    GrantBatch,
    Heartbeat,
    Hello,
    PlanRequest,
    Progress,
    Ready,
    RunConfig,
    RunControl,
    RunRequest,
    RunSpec,
    WireEnvelope,
)
from proto.limits import CONTROL_MAX_BYTES

if TYPE_CHECKING:
    from service_builders import Services

    from proto.control import RunOutcome
    from services.bus import Bus

KINDS = ("random", "truncated", "wrong_type", "wrong_version", "oversized")


@dataclass(frozen=True, slots=True)
class Target:
    """A subject to fuzz, a valid message for it (the base of the bad ones), who counts them."""

    subject: str
    valid: msgspec.Struct
    counters: tuple[str, ...]
    """Services (and ``client``) subscribed to it: each must count every bad message."""
    bulk: bool = False
    """Takes up to the server's max_payload (grants, dones, chunks) rather than the control limit."""


def targets(run: str, hosts: Sequence[str], *, planner: bool, client: str = "client") -> list[Target]:
    """Every subject of run ``run`` on services conductor + ``hosts`` (+ a planner), with who
    listens to it."""
    spec = RunSpec("toy", "pingpong")
    env = WireEnvelope(0.0, 0, "a", 0, "b", msgspec.Raw(msgspec.msgpack.encode({"type": "x"})))
    out: list[Target] = []
    for svc in ["conductor", *hosts, *(["planner"] if planner else [])]:
        hello = Hello(svc, "host", 1, "h", 0, "0", "boot")
        out.append(Target(subjects.hello(svc), hello, ("conductor", client)))
        out.append(Target(subjects.heartbeat(svc), Heartbeat(svc, 1, run, "boot"), ("conductor", client)))
    out += [
        Target(subjects.run_start(), RunRequest(run, spec), ("conductor",)),
        Target(subjects.run_control(), RunControl(run, "stop", "x"), ("conductor",)),
        Target(subjects.config(), RunConfig(run, spec, "0" * 64, "0" * 64), tuple(hosts)),
        Target(subjects.collect(run), Collect(run, 1.0), tuple(hosts)),
        Target(subjects.progress(run), Progress(run, 1, 0.0, 0.0, 0, 0, 0.0), (client,)),
        Target(subjects.outcome(run), Chunk("s", 0, 2, b"x"), (client,), bulk=True),
    ]
    for h in hosts:
        out += [
            Target(subjects.ready(run, h), Ready(run, h, ["a"]), ("conductor",)),
            Target(subjects.grant(run, h), GrantBatch(run, 1, 0.0, ["a"], [0], [env]), (h,), bulk=True),
            Target(
                subjects.done(run, h),
                DoneBatch(run, 1, h, [DoneItem("a", math.inf, [], [])]),
                ("conductor",),
                bulk=True,
            ),
            Target(subjects.export(run, h), Chunk(h, 0, 2, b"x"), ("conductor",), bulk=True),
        ]
    if planner:
        out.append(Target(subjects.plan(), PlanRequest(spec, msgspec.Raw(b"\x80")), ("planner",)))
    return out


def bad(target: Target, kind: str, rng: random.Random, codec: Codec, others: Sequence[Target]) -> bytes:
    """One invalid message of ``kind`` for ``target``."""
    valid = codec.encode(target.valid)
    if kind == "random":
        return rng.randbytes(rng.randint(0, 300))
    if kind == "truncated":
        return valid[: rng.randint(0, len(valid) - 1)]
    if kind == "wrong_type":
        tag = type(target.valid).__struct_config__.tag
        other = rng.choice([t for t in others if type(t.valid).__struct_config__.tag != tag])
        return codec.encode(other.valid)
    if kind == "wrong_version":
        doc = msgpack.unpackb(valid, raw=False)
        doc["type"] = str(doc["type"]).replace("twin.v1.", "twin.v2.", 1)
        return bytes(msgpack.packb(doc))
    if kind == "oversized":
        size = 512 * 1024 if target.bulk else CONTROL_MAX_BYTES + 1 + rng.randint(0, 1000)
        return b"\xc1" * size  # 0xc1 is never valid msgpack: big and malformed either way
    raise ValueError(kind)


def stream(
    run: str, hosts: Sequence[str], count: int, seed: int, *, planner: bool, client: str = "client"
) -> Iterator[tuple[Target, str, bytes]]:
    """``count`` bad messages spread over every target and kind, reproducibly."""
    rng = random.Random(seed)
    codec = Codec()
    ts = targets(run, hosts, planner=planner, client=client)
    for i in range(count):
        target = ts[i % len(ts)]
        kind = KINDS[(i // len(ts)) % len(KINDS)]
        yield target, kind, bad(target, kind, rng, codec, ts)


def counted(svc: Services) -> Counter[str]:
    """Bad messages each service (and the controller, ``client``) counted so far."""
    out: Counter[str] = Counter()
    for s in svc.services:
        for reason in ("malformed", "oversized"):
            out[s.name] += int(
                s.registry.get_sample_value("twin_bus_rejected_total", {"reason": reason}) or 0
            )
    out["client"] = svc.client.rejected["malformed"] + svc.client.rejected["oversized"]
    return out


@dataclass(slots=True)
class FuzzReport:
    """What a fuzzed run gave: its outcome, the bad messages by kind, who should have counted
    how many, who did, who went down, how long publishing took."""

    outcome: RunOutcome
    kinds: Counter[str]
    expected: Counter[str]
    counted: Counter[str]
    down: list[str]
    publish_s: float


async def fuzz_run(
    svc: Services,
    fuzzer_connect: Callable[[], Awaitable[Bus]],
    spec: RunSpec,
    count: int,
    seed: int,
    speed: float,
) -> FuzzReport:
    """Run ``spec`` at ``speed`` and, once its third window is open, publish ``count`` bad
    messages (a connection from ``fuzzer_connect()``, allowed on every subject); wait until
    every subscriber has counted them (or 60 s). The services are left running."""
    fuzzer = await fuzzer_connect()
    svc.buses.append(fuzzer)
    run = asyncio.ensure_future(svc.run(spec, speed=speed, run_id="fuzzed"))
    while svc.conductor.active is None or svc.conductor.active.window < 3:
        await asyncio.sleep(0.01)
    hosts = list(svc.hosts)
    before = counted(svc)
    expected: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    t0 = time.perf_counter()
    for target, kind, data in stream("fuzzed", hosts, count, seed, planner=svc.planner is not None):
        await fuzzer.publish(target.subject, data)
        expected.update(target.counters)
        kinds[kind] += 1
    await fuzzer.flush()
    publish_s = time.perf_counter() - t0
    if run.done():
        raise AssertionError("the run ended before the fuzz was delivered: make it longer")
    outcome = await asyncio.wait_for(run, 600)
    deadline = time.monotonic() + 60
    while counted(svc) - before != expected and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    down = [s.name for s in svc.services if s.state != "ready"]
    return FuzzReport(outcome, kinds, expected, counted(svc) - before, down, publish_s)
