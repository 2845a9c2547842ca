"""Children forked from the supervising process (``llmtwin/runtime/forked.py``) behave like spawned
ones: own process group, own log, exactly the environment given, the command line they stand for,
exit codes and signals reported as ``subprocess`` does; and no fork where it is unsafe."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from llmtwin.runtime.forked import ForkedProcess, can_fork
from llmtwin.runtime.processes import Supervisor

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forks; reads /proc")

ARGV = ["/usr/bin/env", "python", "-m", "services", "balancer", "--name", "balancer"]
"""What the child stands for (never executed when it is forked)."""


def _report() -> int:
    """A child's work: say what it sees, exit 7."""
    print("hello from the child")
    print(f"env={sorted(os.environ.items())}", file=sys.stderr)
    return 7


def _fds() -> int:
    """A child's work: say which of the descriptors in $CHECK are open."""
    open_ = []
    for fd in map(int, os.environ["CHECK"].split(",")):
        try:
            os.fstat(fd)
        except OSError:
            continue
        open_.append(fd)
    print("open", ",".join(map(str, open_)))
    return 0


def _sleep() -> int:
    time.sleep(30)
    return 0


def wait_for(cond: Callable[[], object], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_forked_child_has_its_own_group_log_environment_and_exit_code(tmp_path: Path) -> None:
    assert can_fork(), "pytest runs tests in one thread"
    sup = Supervisor(tmp_path)
    child = sup.spawn("balancer", ARGV, {"ONLY": "this"}, main=_report)
    try:
        assert isinstance(child.proc, ForkedProcess)
        assert child.proc.wait(10) == 7
        log = child.log_path.read_text()
        assert "hello from the child" in log
        assert "env=[('ONLY', 'this')]" in log
    finally:
        sup.stop_all(grace_s=5.0)


def test_a_forked_child_shows_its_command_line_and_reports_the_signal_that_ended_it(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path)
    child = sup.spawn("sleeper", ARGV, {}, main=_sleep)
    try:
        cmdline = Path(f"/proc/{child.pid}/cmdline")
        wait_for(lambda: cmdline.read_text().replace("\0", " ").split() == ARGV)
        assert os.getpgid(child.pid) == child.pid  # its own group: Ctrl-C reaches only the parent
        assert child.proc.poll() is None
        with pytest.raises(subprocess.TimeoutExpired):
            child.proc.wait(0.05)
        assert sup.exited() is None
        os.kill(child.pid, signal.SIGKILL)
        assert child.proc.wait(10) == -signal.SIGKILL
        assert sup.exited() is child
    finally:
        sup.stop_all(grace_s=5.0)


def test_a_forked_child_keeps_only_its_streams_and_the_descriptors_passed(tmp_path: Path) -> None:
    """Like ``subprocess`` (close_fds): none of the parent's other descriptors stay open."""
    kept_r, kept_w = os.pipe()
    other_r, other_w = os.pipe()
    try:
        sup = Supervisor(tmp_path)
        check = ",".join(map(str, (kept_r, kept_w, other_r, other_w)))
        child = sup.spawn("lister", ARGV, {"CHECK": check}, main=_fds, pass_fds=[kept_r])
        assert child.proc.wait(10) == 0
        assert child.log_path.read_text().split() == ["open", str(kept_r)]
    finally:
        for fd in (kept_r, kept_w, other_r, other_w):
            os.close(fd)


def test_a_forked_child_stays_on_the_supervisors_cpus(tmp_path: Path) -> None:
    one = min(os.sched_getaffinity(0))
    sup = Supervisor(tmp_path, cpus=frozenset({one}))
    child = sup.spawn("sleeper", ARGV, {}, main=_sleep)
    try:
        assert isinstance(child.proc, ForkedProcess)
        wait_for(lambda: os.sched_getaffinity(child.pid) == {one})
    finally:
        sup.stop_all(grace_s=5.0)


def test_stop_all_ends_forked_children_and_a_restart_runs_the_command(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path)
    argv = [sys.executable, "-c", "import time; print('started by exec', flush=True); time.sleep(30)"]
    child = sup.spawn("sleeper", argv, None, main=_sleep)
    assert isinstance(child.proc, ForkedProcess)
    os.kill(child.pid, signal.SIGKILL)
    child.proc.wait(10)
    sup.respawn(child)
    try:
        assert isinstance(child.proc, subprocess.Popen)
        wait_for(lambda: "started by exec" in child.log_path.read_text())
    finally:
        assert sup.stop_all(grace_s=5.0) == []
    assert child.proc.poll() == -signal.SIGTERM


def test_no_fork_while_another_thread_runs(tmp_path: Path) -> None:
    """A multi-threaded process may not fork (a lock held by another thread would stay held in
    the child): the command is started instead."""
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert not can_fork()
        sup = Supervisor(tmp_path)
        child = sup.spawn("sleeper", [sys.executable, "-c", "import time; time.sleep(30)"], None, main=_sleep)
        assert isinstance(child.proc, subprocess.Popen)
        sup.stop_all(grace_s=5.0)
    finally:
        stop.set()
        thread.join()
