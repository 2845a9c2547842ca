"""Hostile input during a run: bad messages on every subject are refused and counted by every
service that receives them, none crashes, and the run's results do not change.

500 messages here, on both transports (the nats one from a user allowed on every subject:
the server's permissions keep everyone else out, see test_permissions.py); the 10,000-message
run is ``bench/bench_fuzz.py``.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from fuzz_messages import stream
from service_builders import FUZZER, TOY_SPLIT, Connect, Services, start_services
from toy_components import run_local

from proto.control import RunSpec

pytestmark = pytest.mark.timeout(90)

SPEC = RunSpec("toy", "pingpong", ("balls=200",))
HOSTS = [h.service_name for h in TOY_SPLIT]


def refused(svc: Services) -> Counter[str]:
    """Bad messages each service (and the controller, ``client``) counted."""
    out: Counter[str] = Counter()
    for s in svc.services:
        for reason in ("malformed", "oversized"):
            out[s.name] += int(
                s.registry.get_sample_value("twin_bus_rejected_total", {"reason": reason}) or 0
            )
    out["client"] = svc.client.rejected["malformed"] + svc.client.rejected["oversized"]
    return out


async def test_a_fuzzed_run_refuses_and_counts_everything_and_its_results_do_not_change(
    transport: Connect,
) -> None:
    """500 random, truncated, wrong-type, wrong-version and oversized messages on every subject
    of a run in progress: each counted once by each service subscribed to its subject, every
    service still up, the run's exports LocalRunner's."""
    svc = await asyncio.wait_for(start_services(transport, TOY_SPLIT, planner=True), 20)
    try:
        fuzzer = await svc.connect(FUZZER)
        svc.buses.append(fuzzer)
        run = asyncio.ensure_future(svc.run(SPEC, speed=40.0, run_id="fuzzed"))
        while svc.conductor.active is None or svc.conductor.active.window < 3:
            await asyncio.sleep(0.01)
        before = refused(svc)
        expected: Counter[str] = Counter()
        for target, _, data in stream("fuzzed", HOSTS, 500, seed=7, planner=True):
            await fuzzer.publish(target.subject, data)
            expected.update(target.counters)
        await fuzzer.flush()
        assert not run.done(), "the run ended before the fuzz was delivered: make it longer"
        out = await asyncio.wait_for(run, 60)
        for _ in range(500):
            if refused(svc) - before == expected:
                break
            await asyncio.sleep(0.02)
        assert refused(svc) - before == expected
        assert all(s.state == "ready" for s in svc.services)
    finally:
        await svc.stop()
    ref = run_local(SPEC)
    assert {k: bytes(v) for k, v in out.parts.items()} == ref.parts
    assert (out.end_s, out.stats["windows"]) == (ref.end_s, ref.stats["windows"])
