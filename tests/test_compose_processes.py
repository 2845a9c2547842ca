"""compose.yaml's services started exactly as it describes them (its commands and environment,
host names mapped to 127.0.0.1) as local processes on a real nats-server with compose's own
configuration and keys: its `run` service (`llmtwin run ... --nats URL`) completes a run whose
results are byte-identical to `llmtwin simulate`'s; with a service missing, `llmtwin run` names
what is missing (exit 2)."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmtwin.report.execute import run_output
from llmtwin.report.outputs import write_run
from llmtwin.report.tables import summary_table
from llmtwin.scenario.loader import load_scenario
from tests.compose_fixtures import LLMTWIN, LocalCompose, compose_model, compose_nats, twin_services

pytestmark = [pytest.mark.nats, pytest.mark.slow, pytest.mark.timeout(180)]

RUN = {"LLMTWIN_SCENARIO": "demo", "LLMTWIN_POLICY": "accellm", "LLMTWIN_SPEED": "max"}
"""compose's own variables for the `run` service: the demo, as fast as it goes."""


@pytest.fixture(scope="module")
def model() -> dict[str, Any]:
    return compose_model(RUN)


@pytest.fixture(scope="module")
def deployment(model: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCompose]:
    tmp = tmp_path_factory.mktemp("compose")
    with compose_nats(tmp) as url:
        local = LocalCompose(model, url, tmp)
        try:
            for name in twin_services(model):
                local.start(name)
            yield local
        finally:
            local.stop()


def test_ctrl_c_stops_the_run_and_leaves_the_services_up(deployment: LocalCompose) -> None:
    """Ctrl-C on `llmtwin run` stops its run on the conductor (exit 130); the services stay up
    and idle, so the next test's run on them starts at once."""
    argv, env = deployment.argv_env("run")
    proc = subprocess.Popen([*argv, "--speed", "0.5"], env=env, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    assert "llmtwin run: demo/accellm" in proc.stderr.readline()
    time.sleep(3)  # the run is under way
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 130
    assert "interrupted" in proc.stderr.read()
    assert ": stop (by controller)" in (deployment.tmp / "conductor.log").read_text()
    assert all(p.poll() is None for p in deployment.procs.values())


def test_compose_run_service_gives_the_results_of_simulate(deployment: LocalCompose, tmp_path: Path) -> None:
    argv, env = deployment.argv_env("run")
    assert argv[-1] == f"{deployment.tmp}/out/demo"
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=150, check=False)
    assert done.returncode == 0, done.stderr
    assert "llmtwin run: demo/accellm on the services at nats://127.0.0.1:" in done.stderr
    sim = run_output(load_scenario("demo", [], "accellm"))
    write_run(tmp_path, sim, plots=False)
    out = Path(argv[-1])
    for name in ("requests.csv", "instances.csv"):
        assert (out / name).read_bytes() == (tmp_path / name).read_bytes(), name
    assert done.stdout == summary_table(sim.summary) + "\n"


def test_run_names_the_services_missing(model: dict[str, Any], tmp_path: Path) -> None:
    """Only nats-server and the conductor are up: one line naming the roles missing, exit 2."""
    with compose_nats(tmp_path) as url:
        local = LocalCompose(model, url, tmp_path)
        try:
            local.start("conductor")
            argv, env = local.argv_env("run")
            done = subprocess.run(
                [*argv, "--wait", "3"], env=env, capture_output=True, text=True, timeout=60, check=False
            )
        finally:
            local.stop()
    assert done.returncode == 2
    (last,) = [line for line in done.stderr.splitlines() if not line.startswith("llmtwin run:")]
    assert last.startswith(
        f"llmtwin: no balancer, device, generator service on {url} after 3 s (heard: conductor"
    )


def test_run_without_a_nats_server_says_so(tmp_path: Path) -> None:
    done = subprocess.run(
        [*LLMTWIN, "run", "demo", "--nats", "nats://127.0.0.1:1", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "127.0.0.1:1" in done.stderr
