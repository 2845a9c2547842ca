"""Absurd or hostile sizes are bounded: chunk floods, oversized messages, runs too big, files
outside the scenario directories, log floods."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from service_builders import FUZZER, TOY_SPLIT, Connect, start_services

from llmtwin.errors import ConfigurationError, ProtocolError
from llmtwin.runtime.run_size import RunLimits, check_files, check_memory, check_run_size
from llmtwin.scenario.loader import load_scenario
from proto import subjects
from proto.chunks import Reassembler
from proto.codec import Codec
from proto.control import Chunk, Reply, RunRequest, RunSpec
from proto.limits import CONTROL_MAX_BYTES
from services.cluster import ClusterFactory
from services.ratelog import RateLimitedLog

pytestmark = pytest.mark.timeout(60)


def test_reassembly_is_bounded_in_bytes_streams_and_consistency() -> None:
    """Past max_bytes held or max_streams open, chunks are refused; a stream cannot change its
    number of pieces; completed streams free their bytes."""
    r = Reassembler(max_streams=2, max_bytes=1000)
    assert r.add(Chunk("a", 0, 2, b"x" * 400)) is None
    with pytest.raises(ProtocolError, match="of 'a': it had 2"):
        r.add(Chunk("a", 1, 3, b"y"))
    with pytest.raises(ProtocolError, match="more than 1000 bytes"):
        r.add(Chunk("b", 0, 2, b"z" * 700))
    assert r.add(Chunk("a", 1, 2, b"x" * 400)) == b"x" * 800
    assert r.add(Chunk("b", 0, 2, b"z" * 700)) is None  # a's bytes were freed
    r.add(Chunk("c", 0, 2, b""))
    with pytest.raises(ProtocolError, match="more than 2 unfinished"):
        r.add(Chunk("d", 0, 2, b""))


def test_rejections_are_logged_once_per_reason_per_interval_with_counts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A flood of 1,000 bad messages of one reason: two lines in two intervals, the second
    saying how many were held back; another reason gets its own line."""
    now = [0.0]
    rl = RateLimitedLog(logging.getLogger("flood"), interval_s=10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="flood"):
        for i in range(1000):
            now[0] = i * 0.011  # 11 s in all
            rl.warn("malformed", f"bad {i}")
        rl.warn("oversized", "big")
        rl.flush()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "bad 0"
    assert lines[1].startswith("bad 910 (909 more malformed held back")
    assert lines[2] == "big"
    assert lines[3] == "bad 999 (88 more malformed held back)"  # 911..999: this one and 88 more
    assert len(lines) == 4


async def test_a_chunk_flood_is_refused_and_the_run_is_unchanged(transport: Connect) -> None:
    """Export chunks from a host while the run has not reached collection are refused unread
    (stale), and beyond the run's budget (flood) during it; the results do not change."""
    svc = await start_services(transport, TOY_SPLIT, conductor={"max_result_bytes": 200_000})
    try:
        h2 = svc.hosts["h2"]
        spec = RunSpec("toy", "pingpong", ("balls=100",))
        run = asyncio.ensure_future(svc.run(spec, speed=50.0, run_id="flooded"))
        while svc.conductor.active is None or svc.conductor.active.phase != "running":
            await asyncio.sleep(0.01)
        for i in range(300):
            await h2.publish(subjects.export("flooded", "h2"), Chunk("h2", i, 10_000, b"\0" * 50_000))
        await h2.bus.flush()
        out = await asyncio.wait_for(run, 30)
        registry = svc.registry("conductor")
        stale = registry.get_sample_value("twin_bus_rejected_total", {"reason": "stale"})
        assert stale == 300.0
        assert set(out.parts) == {"ping", "pong"}
    finally:
        await svc.stop()


async def test_oversized_control_messages_are_refused_before_decoding(transport: Connect) -> None:
    """A request over the control limit gets an error answer without being decoded."""
    svc = await start_services(transport, TOY_SPLIT)
    try:
        fuzzer = await svc.connect(FUZZER)
        svc.buses.append(fuzzer)
        big = Codec().encode(RunRequest("r", RunSpec("toy", "pingpong", ("x=" + "y" * CONTROL_MAX_BYTES,))))
        reply = Codec().decode(await fuzzer.request(subjects.run_start(), big, 5.0), Reply)
        assert not reply.ok
        assert "more than the 65536 this subject takes" in reply.error
        oversized = svc.registry("conductor").get_sample_value(
            "twin_bus_rejected_total", {"reason": "oversized"}
        )
        assert oversized == 1.0
    finally:
        await svc.stop()


def test_runs_too_big_are_refused_before_anything_is_generated() -> None:
    """Requests and instances per run are bounded (the services' TWIN_MAX_* settings)."""
    limits = RunLimits(max_requests=1000, max_instances=8)
    with pytest.raises(ConfigurationError, match="run of 1,000,000 requests exceeds the limit of 1,000"):
        check_run_size(load_scenario("demo", ["workload.requests=1000000"]), limits)
    with pytest.raises(ConfigurationError, match="run of 16 instances exceeds the limit of 8"):
        check_run_size(load_scenario("demo", ["cluster.instances=16"]), limits)
    factory = ClusterFactory(limits=limits)
    with pytest.raises(ConfigurationError, match="exceeds the limit"):
        factory.build(RunSpec("cluster", "demo", ("workload.requests=5000",)))
    check_run_size(load_scenario("demo"), limits)


def test_a_run_that_cannot_fit_in_memory_is_refused() -> None:
    """A scenario clearly needing more memory than available: one line, before generating."""
    with pytest.raises(
        ConfigurationError, match=r"needs at least .* GiB of memory .* has 1\.0 GiB available"
    ):
        check_memory(load_scenario("demo", ["workload.requests=1000000"]), available=2**30)
    check_memory(load_scenario("demo"), available=2**30)


def test_services_read_files_only_from_their_scenario_directories(tmp_path: Path) -> None:
    """Catalog names are always fine; a scenario path or a path-valued override must resolve
    (symbolic links followed) inside a configured directory."""
    allowed = tmp_path / "scenarios"
    allowed.mkdir()
    mine = allowed / "mine.toml"
    mine.write_text("")
    (allowed / "escape.toml").symlink_to("/etc/hostname")
    check_files("demo", ["workload.requests=5"], [])
    check_files(str(mine), [], [str(allowed)])
    for scenario, overrides in [
        ("/etc/passwd", ()),
        (str(mine), ()),  # no directory configured
        (str(allowed / "escape.toml"), ()),
        ("demo", ("model=/etc/hosts.toml",)),
        ("demo", ("workload.trace=../secret.csv",)),
    ]:
        dirs = [str(allowed)] if scenario != str(mine) else []
        with pytest.raises(ConfigurationError, match="files may be read only from the scenario directories"):
            check_files(scenario, overrides, dirs)
    with pytest.raises(ConfigurationError, match="scenario '/etc/passwd'"):
        ClusterFactory().build(RunSpec("cluster", "/etc/passwd"))
