"""``llmtwin up --observe`` on bad input: one clear line and exit 2 before anything starts; a
Prometheus that fails once the run is set up costs the run nothing (its results are written)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest

from llmtwin.cli.main import main
from tests.compose_fixtures import LLMTWIN
from tests.prometheus_fixtures import require


def test_no_prometheus_binary_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["up", "demo", "--observe", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("llmtwin: no `prometheus` binary on PATH: "), err
    assert "\n" not in err
    assert not (tmp_path / "out" / "prometheus").exists()


def test_a_busy_prometheus_port_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    require("prometheus")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        rc = main(["up", "demo", "--observe", "--prometheus-port", str(port), "--out", str(tmp_path)])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"llmtwin: --prometheus-port {port}: "), err
    assert "\n" not in err


def test_linger_without_observe_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["up", "demo", "--linger", "30"]) == 2
    assert capsys.readouterr().err.strip() == "llmtwin: --linger and --prometheus-port go with --observe"


@pytest.mark.nats
@pytest.mark.slow
def test_a_prometheus_that_fails_costs_the_run_nothing(tmp_path: Path) -> None:
    """A `prometheus` that is there but dies at start: the run goes on, says why in one line,
    and writes its results; endpoints.json says there is no Prometheus."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "prometheus"
    fake.write_text("#!/bin/sh\necho 'opening storage failed: disk full' >&2\nexit 1\n")
    fake.chmod(0o755)
    out = tmp_path / "out"
    done = subprocess.run(
        [
            *LLMTWIN,
            "up",
            "demo",
            "--set",
            "workload.requests=30",
            "--observe",
            "--no-plots",
            "--out",
            str(out),
        ],
        env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (line,) = [ln for ln in done.stderr.splitlines() if "no Prometheus" in ln]
    assert line.startswith(
        "llmtwin up: no Prometheus, the run goes on without it: prometheus did not start on port "
    )
    assert line.endswith("opening storage failed: disk full")
    assert json.loads((out / "summary.json").read_text())["requests_completed"] == 30
    assert json.loads((out / "endpoints.json").read_text())["prometheus"] is None
    assert not (out / "dashboards").exists()
