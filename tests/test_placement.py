"""``--cpus auto``: one CPU for nats-server and the services only where hand-offs are faster there."""

from __future__ import annotations

import io
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from llmtwin.runtime.placement import AutoPlacement, HandoffProbe, Placement, pin_process, probe_handoff
from llmtwin.runtime.processes import Supervisor
from llmtwin.runtime.up import Launcher, cluster_layout

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


def wait_for_two_threads(pid: int) -> None:
    deadline = time.monotonic() + 10
    while len(os.listdir(f"/proc/{pid}/task")) < 2:
        assert time.monotonic() < deadline, f"process {pid} never started its second thread"
        time.sleep(0.01)


@linux_only
def test_pin_process_moves_every_thread_of_a_running_process() -> None:
    one = frozenset({max(os.sched_getaffinity(0))})
    proc = subprocess.Popen([sys.executable, "-c", THREADED])
    try:
        wait_for_two_threads(proc.pid)
        pin_process(proc.pid, one)
        assert cpus_of_threads(proc.pid) == [set(one)] * 2
    finally:
        proc.kill()
        proc.wait()
    pin_process(proc.pid, one)  # gone: nothing to do, no error


@linux_only
async def test_the_launcher_moves_server_and_services_and_restarts_follow(tmp_path: Path) -> None:
    """After the services are up: every thread of every service and of the server on the CPU
    chosen, and a service or server started again starts there."""
    cpu = max(os.sched_getaffinity(0))
    sup = Supervisor(tmp_path)
    for name in ("conductor", "device-1"):
        sup.spawn(name, [sys.executable, "-c", THREADED])
    server = SimpleNamespace(proc=subprocess.Popen([sys.executable, "-c", THREADED]), cpus=None)
    stream = io.StringIO()
    auto = AutoPlacement(lambda a, b: HandoffProbe(9.0, 36.0), allowed=[cpu - 1, cpu])
    launcher = Launcher(cluster_layout(1, planner=False), auto_cpus=auto, stream=stream)
    launcher.supervisor, launcher.bus = sup, SimpleNamespace(server=server)  # type: ignore[assignment]
    try:
        for pid in [*sup.pids(), server.proc.pid]:
            wait_for_two_threads(pid)
        await launcher._place()
        for pid in [*sup.pids(), server.proc.pid]:
            assert all(cpus == {cpu} for cpus in cpus_of_threads(pid)), pid
        assert sup.cpus == server.cpus == launcher.cpus == frozenset({cpu})
        assert (
            f"placement: nats-server and the services on CPU {cpu} (a hand-off takes 9 us"
            in stream.getvalue()
        )
        sup.children[0].proc.kill()  # as if it crashed
        sup.children[0].proc.wait()
        sup.respawn(sup.children[0])
        assert os.sched_getaffinity(sup.children[0].pid) == {cpu}
    finally:
        sup.stop_all(grace_s=1.0)
        server.proc.kill()
        server.proc.wait()
