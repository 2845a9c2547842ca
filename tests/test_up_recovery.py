"""``llmtwin up`` under attack and under faults, as a user would see it (real processes, SIGKILL).

* Every non-conductor service process, and then nats-server, killed one after the other during
  one run: each is started again, the run completes, requests.csv is byte-identical to
  ``llmtwin simulate``'s.
* An anonymous client on ``up``'s server cannot connect, so its stop, fake done and chunk flood
  change nothing.
* A nats-server that stops answering for good ends ``up`` with "nats-server ... not answering"
  within the window timeout, blaming no service.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_up import LLMTWIN, cmdline, descendants, simulate
from tls_files import make_tls_files

from llmtwin.errors import BusError
from llmtwin.runtime.nats_auth import new_seed
from services.nats_bus import NatsOptions, connect

pytestmark = [
    pytest.mark.nats,
    pytest.mark.slow,
    pytest.mark.timeout(300),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc"),
]

PRESERVE = ["cluster.tp=2", "cluster.instances=2", "engine.preserve=true"]
"""demo with PRESERVE: a planner service runs too."""


def start(args: list[str], tmp_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    err = (tmp_path / "up.err").open("w")
    return subprocess.Popen(
        [*LLMTWIN, "up", *args],
        stdout=subprocess.DEVNULL,
        stderr=err,
        text=True,
        cwd=tmp_path,
        env={**os.environ, **(env or {})},
    )


def wait_until(cond: object, what: str, proc: subprocess.Popen[str], timeout_s: float = 90.0) -> None:
    """Poll ``cond()`` (files and /proc: no event to wait on across processes) with a deadline."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return
        if proc.poll() is not None:
            raise AssertionError(f"up exited ({proc.returncode}) while waiting for {what}")
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def child(proc: subprocess.Popen[str], needle: str) -> int | None:
    """The pid of ``up``'s child whose command line contains ``needle``."""
    for pid in descendants(proc.pid):
        if needle in cmdline(pid):
            return pid
    return None


def server_url(proc: subprocess.Popen[str]) -> str:
    pid = child(proc, "--name conductor")
    assert pid is not None
    args = cmdline(pid).split()
    return args[args.index("--nats") + 1]


def test_every_service_but_the_conductor_and_nats_server_killed_in_turn_change_nothing(
    tmp_path: Path,
) -> None:
    """device-1, generator, balancer, planner, then nats-server, each SIGKILLed once the previous
    one is back: up starts each again, the run completes, requests.csv is simulate's."""
    overrides = [*PRESERVE, "workload.requests=200"]
    args = ["demo", *(a for o in overrides for a in ("--set", o)), "--speed", "0.4", "--no-plots"]
    proc = start([*args, "--quiet", "--out", "out", "--device-processes", "2"], tmp_path)
    logs = tmp_path / "out" / "logs"
    conductor = logs / "conductor.log"
    try:
        wait_until(lambda: "ready: {" in text(conductor), "the run to start", proc)
        for victim in ("device-1", "generator", "balancer"):
            pid = child(proc, f"--name {victim}")
            assert pid is not None, victim
            os.kill(pid, signal.SIGKILL)
            wait_until(
                lambda v=victim: f"{v} caught up to window" in text(conductor), f"{victim} to rejoin", proc
            )
        pid = child(proc, "--name planner")
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: text(logs / "planner.log").count("(planner) ready") == 2, "the planner back", proc)
        server = child(proc, "nats-server")
        assert server is not None
        os.kill(server, signal.SIGKILL)
        wait_until(lambda: "reconnected" in text(conductor), "the services to reconnect", proc)
        assert proc.wait(240) == 0, text(tmp_path / "up.err")
    finally:
        if proc.poll() is None:
            proc.kill()
    err = text(tmp_path / "up.err")
    for victim in ("device-1", "generator", "balancer", "planner"):
        assert f"service {victim} stopped (signal SIGKILL); restarting it (1 of 3)" in err
    assert "nats-server stopped (signal SIGKILL); starting it again on port" in err
    assert (tmp_path / "out" / "requests.csv").read_bytes() == simulate(tmp_path, overrides)


async def test_an_anonymous_client_cannot_stop_fake_or_flood_a_run(tmp_path: Path) -> None:
    """(Over TLS: --tls-ca/--tls-cert/--tls-key.) On up's own server an anonymous client (or
    one with a seed of its own) is refused at connect, so no stop, fake done or chunk flood of
    its can reach anyone (what a connected service of the wrong role could try is refused by
    subject: test_permissions.py, and bounded: test_limits.py); the results are identical."""
    overrides = ["workload.requests=200"]
    tls = make_tls_files(tmp_path / "tls")
    flags = ["--tls-ca", str(tls.ca), "--tls-cert", str(tls.cert), "--tls-key", str(tls.key)]
    args = ["demo", "--set", overrides[0], "--speed", "2", "--no-plots", "--quiet", "--out", "out", *flags]
    proc = start(args, tmp_path)
    try:
        wait_until(lambda: "ready: {" in text(tmp_path / "out" / "logs" / "conductor.log"), "the run", proc)
        url = server_url(proc)
        assert url.startswith("tls://")
        for seed in ("", new_seed()):  # no credentials; a seed of nobody's (it may read the CA)
            with pytest.raises(BusError, match=r"refused 'intruder': authorization violation"):
                await connect(NatsOptions(url, "intruder", nkey_seed=seed, tls_ca=str(tls.ca)))
        assert proc.wait(120) == 0, text(tmp_path / "up.err")
    finally:
        if proc.poll() is None:
            proc.kill()
    assert (tmp_path / "out" / "requests.csv").read_bytes() == simulate(tmp_path, overrides)


def test_a_server_that_never_answers_again_ends_up_with_that_message(tmp_path: Path) -> None:
    """nats-server frozen (SIGSTOP) for good: up exits 2 within the window timeout (4 s here),
    saying the server does not answer, and leaves nothing behind."""
    env = {"TWIN_WINDOW_TIMEOUT_S": "4", "TWIN_DEAD_AFTER_S": "2"}
    proc = start(["demo", "--speed", "0.5", "--no-plots", "--quiet", "--out", "out"], tmp_path, env)
    server = None
    try:
        wait_until(lambda: "ready: {" in text(tmp_path / "out" / "logs" / "conductor.log"), "the run", proc)
        server = child(proc, "nats-server")
        assert server is not None
        os.kill(server, signal.SIGSTOP)
        t0 = time.monotonic()
        code = proc.wait(90)
        waited = time.monotonic() - t0
    finally:
        if server is not None:
            with contextlib.suppress(ProcessLookupError):  # up's cleanup may have killed it
                os.kill(server, signal.SIGCONT)
        if proc.poll() is None:
            proc.kill()
    err = text(tmp_path / "up.err")
    assert code == 2, err
    assert "llmtwin: nats-server at nats://127.0.0.1:" in err
    assert "not answering for" in err
    assert "stopped answering" not in err  # no service blamed
    assert waited < 60, waited
