"""``--cpus auto``: one CPU for nats-server and the services only where hand-offs are faster there."""

from __future__ import annotations

import io
import math
import os
import signal
from pathlib import Path

import pytest

from llmtwin.runtime.layout import cluster_layout
from llmtwin.runtime.placement import AutoPlacement, HandoffProbe, Placement, probe_handoff
from llmtwin.runtime.up import Launcher

linux_only = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU affinity is Linux-only")

THREADED = "import threading, time\nthreading.Thread(target=time.sleep, args=(60,)).start()\ntime.sleep(60)\n"
"""A process with a second thread, started before anything pins it."""


def probe_of(same_us: float, cross_us: float) -> tuple[list[tuple[int, int]], AutoPlacement]:
    calls: list[tuple[int, int]] = []

    def probe(cpu: int, other: int) -> HandoffProbe:
        calls.append((cpu, other))
        return HandoffProbe(same_us, cross_us)

    return calls, AutoPlacement(probe, allowed=[0, 1, 2, 3])


def test_auto_compacts_only_where_one_cpu_is_at_least_twice_as_fast() -> None:
    calls, auto = probe_of(9.0, 36.0)
    assert auto.decide(1) == Placement(frozenset({3}), "a hand-off takes 9 us on one CPU, 36 us between two")
    assert calls == [(3, 2)]  # the last CPU, measured against the one before
    assert probe_of(9.0, 18.0)[1].decide(1).cpus == frozenset({3})  # exactly twice: compact
    assert probe_of(10.0, 19.0)[1].decide(1).cpus is None


def test_auto_does_not_measure_with_one_cpu_or_several_device_processes() -> None:
    calls, auto = probe_of(1.0, 100.0)
    assert auto.decide(2).cpus is None
    assert "2 device processes" in auto.decide(2).why
    lone = AutoPlacement(lambda a, b: HandoffProbe(1.0, 100.0), allowed=[5])
    assert lone.decide(1) == Placement(None, "this process may use one CPU only")
    assert calls == []


@linux_only
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_the_probe_measures_both_placements_and_gives_the_thread_its_cpus_back() -> None:
    before = os.sched_getaffinity(0)
    cpus = sorted(before)
    got = probe_handoff(cpus[-1], cpus[-2], rounds=50)
    assert os.sched_getaffinity(0) == before
    for us in (got.same_cpu_us, got.cross_cpu_us):
        assert math.isfinite(us)
        assert 0 < us < 100_000


def cpus_of_threads(pid: int) -> list[set[int]]:
    return [os.sched_getaffinity(int(tid)) for tid in os.listdir(f"/proc/{pid}/task")]


@linux_only
def test_the_launcher_starts_server_and_services_on_the_cpu_chosen_and_restarts_follow(
    tmp_path: Path,
) -> None:
    """Decided before anything starts: every thread of nats-server (its Go runtime then sizes
    itself to that CPU) and of every service on the CPU chosen, and a service started again
    starts there."""
    cpu = max(os.sched_getaffinity(0))
    stream = io.StringIO()
    auto = AutoPlacement(lambda a, b: HandoffProbe(9.0, 36.0), allowed=[cpu - 1, cpu])
    launcher = Launcher(cluster_layout(1, planner=False), auto_cpus=auto, stream=stream, log_dir=tmp_path)
    with launcher.started():
        sup, bus = launcher.supervisor, launcher.bus
        assert sup is not None
        assert bus is not None
        assert bus.server.proc is not None
        assert sup.cpus == bus.server.cpus == launcher.cpus == frozenset({cpu})
        for pid in [*sup.pids(), bus.server.proc.pid]:
            assert all(cpus == {cpu} for cpus in cpus_of_threads(pid)), pid
        assert (
            f"placement: nats-server and the services on CPU {cpu} (a hand-off takes 9 us"
            in stream.getvalue()
        )
        child = sup.children[0]
        os.kill(child.pid, signal.SIGKILL)  # as if it crashed
        child.proc.wait()
        sup.respawn(child)
        assert os.sched_getaffinity(child.pid) == {cpu}
