"""Hostile input during a run: bad messages on every subject are refused and counted by every
service that receives them, none crashes, and the run's results do not change.

500 messages here, on both transports (the nats one from a user allowed on every subject:
the server's permissions keep everyone else out, see test_permissions.py); the 10,000-message
run is ``bench/bench_fuzz.py``.
"""

from __future__ import annotations

import asyncio

import pytest
from fuzz_messages import fuzz_run
from service_builders import FUZZER, TOY_SPLIT, Connect, start_services
from toy_components import run_local

from proto.control import RunSpec

pytestmark = pytest.mark.timeout(90)

SPEC = RunSpec("toy", "pingpong", ("balls=200",))
HOSTS = [h.service_name for h in TOY_SPLIT]


async def test_a_fuzzed_run_refuses_and_counts_everything_and_its_results_do_not_change(
    transport: Connect,
) -> None:
    """500 random, truncated, wrong-type, wrong-version and oversized messages on every subject
    of a run in progress: each counted once by each service subscribed to its subject, every
    service still up, the run's exports LocalRunner's."""
    svc = await asyncio.wait_for(start_services(transport, TOY_SPLIT, planner=True), 20)
    try:
        report = await fuzz_run(svc, lambda: svc.connect(FUZZER), SPEC, 500, seed=7, speed=40.0)
    finally:
        await svc.stop()
    assert report.counted == report.expected
    assert report.down == []
    out = report.outcome
    ref = run_local(SPEC)
    assert {k: bytes(v) for k, v in out.parts.items()} == ref.parts
    assert (out.end_s, out.stats["windows"]) == (ref.end_s, ref.stats["windows"])
