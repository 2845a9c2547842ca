"""``llmtwin up``: same outputs as simulate, and nothing left behind on Ctrl-C or a failed service."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmtwin.errors import ConfigurationError
from llmtwin.report.execute import run_output
from llmtwin.report.outputs import write_run
from llmtwin.report.tables import summary_table
from llmtwin.runtime.processes import Supervisor, parse_cpus
from llmtwin.scenario.loader import load_scenario

pytestmark = [pytest.mark.nats, pytest.mark.slow, pytest.mark.timeout(120)]

LLMTWIN = [sys.executable, "-m", "llmtwin.cli.main"]

LONG_RUN = ["demo", "--speed", "0.1", "--no-plots"]
"""A run that lasts minutes (demo's 13 virtual seconds at a tenth of real time)."""

SERVICES = 5
"""Children of ``up`` for LONG_RUN: nats-server, conductor, generator, balancer, device-1."""


def proc_table() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, process group) of every live process, from /proc."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z":  # zombies are dead (waiting for their parent to read the status)
            table[int(entry.name)] = (int(fields[1]), int(fields[2]))
    return table


def descendants(root: int) -> set[int]:
    table = proc_table()
    found, frontier = set(), {root}
    while frontier:
        kids = {pid for pid, (ppid, _) in table.items() if ppid in frontier}
        frontier = kids - found
        found |= kids
    return found


def cmdline(pid: int) -> str:
    try:
        return f"{pid}: " + Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    except OSError:
        return f"{pid}: (gone)"


def leftovers(pids: set[int]) -> set[int]:
    """Which of ``pids``, or members of their process groups, are still alive."""
    return {pid for pid, (_, pgid) in proc_table().items() if pid in pids or pgid in pids}


def simulate(tmp_path: Path, overrides: list[str]) -> bytes:
    """The requests.csv ``llmtwin simulate demo`` writes with ``overrides``."""
    out = tmp_path / "sim"
    write_run(out, run_output(load_scenario("demo", overrides)), plots=False)
    return (out / "requests.csv").read_bytes()


def start_up(args: list[str], tmp_path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*LLMTWIN, "up", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )


def wait_for_line(proc: subprocess.Popen[str], needle: str, timeout_s: float = 60.0) -> list[str]:
    """Read stderr lines until one contains ``needle`` (the services are then up)."""
    assert proc.stderr is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        if needle in line:
            return seen
    raise AssertionError(f"never saw {needle!r}; stderr so far: {''.join(seen)}")


def children_of(proc: subprocess.Popen[str], expect: int) -> set[int]:
    """``up``'s descendants once ``expect`` of them exist (nats-server + services)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        kids = descendants(proc.pid)
        if len(kids) >= expect:
            return kids
        time.sleep(0.05)
    raise AssertionError(f"expected {expect} children of up, found {descendants(proc.pid)}")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ctrl_c_leaves_no_process_behind(tmp_path: Path) -> None:
    """SIGINT to a running `llmtwin up` stops nats-server and every service; up exits 130."""
    proc = start_up(LONG_RUN, tmp_path)
    try:
        wait_for_line(proc, "services up")
        kids = children_of(proc, SERVICES)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, f"exit code {proc.returncode}: {err}"
    assert "interrupted" in err
    left = leftovers(kids)
    assert left == set(), f"still running: {[cmdline(p) for p in left]} of {[cmdline(p) for p in kids]}"


def server_of(proc: subprocess.Popen[str]) -> int:
    """The pid of ``up``'s nats-server, once it runs."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for pid in descendants(proc.pid):
            if "nats-server" in cmdline(pid):
                return pid
        time.sleep(0.01)
    raise AssertionError("up started no nats-server")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ctrl_c_while_the_server_cannot_answer_still_exits_130(tmp_path: Path) -> None:
    """Ctrl-C as the run starts, nats-server frozen (a loaded machine at its worst): up's own
    bus calls are cut short mid-flight, yet it exits 130 and leaves no process behind."""
    proc = start_up(LONG_RUN, tmp_path)
    try:
        server = server_of(proc)
        wait_for_line(proc, "services up")
        os.kill(server, signal.SIGSTOP)  # up is now starting the run: its flush gets no PONG
        try:
            kids = children_of(proc, SERVICES)
            proc.send_signal(signal.SIGINT)
            time.sleep(0.5)  # up cancels the run and starts its cleanup while the server is frozen
        finally:
            os.kill(server, signal.SIGCONT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, f"exit code {proc.returncode}: {err}"
    assert "interrupted" in err
    left = leftovers(kids)
    assert left == set(), f"still running: {[cmdline(p) for p in left]} of {[cmdline(p) for p in kids]}"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_dead_service_stops_everything_and_is_named(tmp_path: Path) -> None:
    """When a service process dies mid-run and may not be restarted (--max-restarts 0), up says
    which one and how, stops the rest, exits non-zero."""
    proc = start_up([*LONG_RUN, "--max-restarts", "0"], tmp_path)
    try:
        wait_for_line(proc, "services up")
        kids = children_of(proc, SERVICES)
        table = proc_table()
        victim = next(pid for pid in kids if "device-1" in cmdline(pid))
        assert table[victim][0] == proc.pid
        os.kill(victim, signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 2, f"exit code {proc.returncode}: {err}"
    assert "service device-1 stopped (signal SIGKILL): it was restarted 0 times" in err
    left = leftovers(kids)
    assert left == set(), f"still running: {[cmdline(p) for p in left]}"


def test_up_starts_fresh_interpreters_where_it_may_not_fork(tmp_path: Path) -> None:
    """A multi-threaded ``up`` (or one off Linux) may not fork its services: it starts each from a
    fresh interpreter, and the run is the same."""
    code = (
        "import sys, threading, time\n"
        "threading.Thread(target=time.sleep, args=(120,), daemon=True).start()\n"
        "from llmtwin.cli.main import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    args = ["up", "demo", "--set", "workload.requests=20", "--no-plots", "--out", str(tmp_path / "up")]
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=100)
    assert done.returncode == 0, done.stderr
    assert "services up" in done.stderr
    assert (tmp_path / "up" / "requests.csv").read_bytes() == simulate(tmp_path, ["workload.requests=20"])


def test_up_writes_the_same_requests_csv_as_simulate(tmp_path: Path) -> None:
    """Same scenario and seed: byte-identical requests.csv and instances.csv over NATS (every
    service its own process) and in-process (what `llmtwin simulate` runs and writes)."""
    overrides = ["workload.requests=80"]
    up = subprocess.run(
        [
            *LLMTWIN,
            "up",
            "demo",
            "--set",
            overrides[0],
            "--no-plots",
            "--quiet",
            "--out",
            str(tmp_path / "up"),
        ],
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert up.returncode == 0, up.stderr
    scenario = load_scenario("demo", overrides)
    sim = run_output(scenario)
    write_run(tmp_path / "sim", sim, plots=False)
    for name in ("requests.csv", "instances.csv"):
        assert (tmp_path / "up" / name).read_bytes() == (tmp_path / "sim" / name).read_bytes(), name
    assert up.stdout == summary_table(sim.summary) + "\n"
    logs = {p.name for p in (tmp_path / "up" / "logs").iterdir()}
    assert logs == {"conductor.log", "generator.log", "balancer.log", "device-1.log"}


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU affinity is Linux-only")
def test_cpus_confine_the_children_and_are_checked(tmp_path: Path) -> None:
    """--cpus: children run on the CPUs given; 'all' leaves placement to the OS; unknown CPUs are refused."""
    one = min(os.sched_getaffinity(0))
    assert parse_cpus("all") is None
    assert parse_cpus(str(one)) == {one}
    with pytest.raises(ConfigurationError, match="not available"):
        parse_cpus(str(max(os.sched_getaffinity(0)) + 1000))
    with pytest.raises(ConfigurationError, match="bad CPU range"):
        parse_cpus("2-1")
    sup = Supervisor(tmp_path, cpus=frozenset({one}))
    child = sup.spawn("sleeper", [sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert os.sched_getaffinity(child.pid) == {one}
    finally:
        sup.stop_all(grace_s=5.0)
