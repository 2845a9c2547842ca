"""The simulate, compare and sweep commands end to end on the small demo scenario."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmtwin.cli.main import main

SMALL = ["--set", "workload.requests=40", "--quiet"]
"""The demo scenario cut to 40 requests: a fraction of a second per run."""


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("llmtwin: ")
    return err


def test_unknown_scenario_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """A scenario name that no file defines is one line on stderr and exit code 2."""
    assert main(["simulate", "no-such-scenario"]) == 2
    assert "no-such-scenario" in _one_error_line(capsys)


def test_bad_override_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """An out-of-range --set value is refused before anything runs."""
    assert main(["simulate", "demo", "--set", "workload.rate_rps=-1"]) == 2
    assert "workload.rate_rps" in _one_error_line(capsys)


def test_bad_rates_and_policy_lists_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """Malformed --rates, --policies and --jobs are user errors (exit 2), not tracebacks."""
    assert main(["sweep", "demo", "--rates", "1,x"]) == 2
    assert "--rates" in _one_error_line(capsys)
    assert main(["sweep", "demo", "--rates", "1,0"]) == 2
    _one_error_line(capsys)
    assert main(["compare", "demo", "--policies", "colocated,colocated"]) == 2
    assert "repeated" in _one_error_line(capsys)
    assert main(["compare", "demo", "--jobs", "0"]) == 2
    _one_error_line(capsys)
    assert main(["sweep", "demo", "--rates", "1", "--policies", "colocated", "--versus", "accellm"]) == 2
    assert "--versus" in _one_error_line(capsys)


def test_sweep_without_rates_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    """demo has no [sweep] section, so sweep needs --rates."""
    assert main(["sweep", "demo"]) == 2
    assert "rates" in _one_error_line(capsys)


def test_simulate_writes_every_file_and_requests_csv_is_reproducible(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two runs of the same scenario and seed give a byte-identical requests.csv."""
    assert main(["simulate", "demo", *SMALL, "--out", str(tmp_path / "a")]) == 0
    table = capsys.readouterr().out
    assert "TTFT p50 (ms)" in table
    assert main(["simulate", "demo", *SMALL, "--no-plots", "--out", str(tmp_path / "b")]) == 0
    a, b = tmp_path / "a", tmp_path / "b"
    for name in ("summary.json", "requests.csv", "instances.csv", "scenario.json", "scenario.toml"):
        assert (a / name).exists(), name
    for name in ("latency_cdf.png", "kv_timeline.png", "role_timeline.png", "batch_sizes.png"):
        assert (a / name).stat().st_size > 0, name
    assert not list(b.glob("*.png"))
    assert (a / "requests.csv").read_bytes() == (b / "requests.csv").read_bytes()
    assert (a / "instances.csv").read_bytes() == (b / "instances.csv").read_bytes()
    doc = json.loads((a / "summary.json").read_text())
    assert doc["policy"] == "colocated"
    assert doc["requests_completed"] + doc["requests_failed"] == 40
    for key in ("ttft_s", "tbt_s", "e2e_s"):
        assert all(doc[key][k] is not None for k in ("p50", "p90", "p99", "mean"))
    assert doc["throughput_tokens_per_s"] > 0
    assert 0.0 <= doc["idle_fraction"] <= 1.0
    assert doc["effective_scenario"]["workload"]["requests"] == 40


def test_simulate_json_prints_the_summary(capsys: pytest.CaptureFixture[str]) -> None:
    """--json prints summary.json on stdout; --policy picks the policy."""
    assert main(["simulate", "demo", *SMALL, "--policy", "accellm", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["policy"] == "accellm"
    assert doc["effective_scenario"]["policy"]["name"] == "accellm"


def test_compare_runs_every_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A table column and an output folder per policy; parallel jobs give the same numbers."""
    pols = "colocated,disaggregated,accellm"
    assert main(["compare", "demo", *SMALL, "--policies", pols, "--out", str(tmp_path / "s")]) == 0
    header = capsys.readouterr().out.splitlines()[0].split()
    assert header[:3] == ["metric", "colocated", "disaggregated"]
    serial = json.loads((tmp_path / "s" / "compare.json").read_text())
    assert serial["policies"] == pols.split(",")
    for p in serial["policies"]:
        assert (tmp_path / "s" / p / "requests.csv").exists()
    assert (tmp_path / "s" / "latency_cdf.png").exists()
    args = ["compare", "demo", *SMALL, "--policies", pols, "--no-plots", "--jobs", "2"]
    assert main([*args, "--out", str(tmp_path / "p")]) == 0
    parallel = json.loads((tmp_path / "p" / "compare.json").read_text())
    for p in serial["policies"]:
        s, q = serial["summaries"][p], parallel["summaries"][p]
        s.pop("run")
        q.pop("run")
        assert s == q
        assert (tmp_path / "s" / p / "requests.csv").read_bytes() == (
            tmp_path / "p" / p / "requests.csv"
        ).read_bytes()


def test_sweep_collects_a_summary_per_rate_and_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each (rate, policy) point is run with workload.rate_rps set to the rate; --versus adds a table."""
    args = [
        "sweep",
        "demo",
        *SMALL,
        "--rates",
        "8,16",
        "--policies",
        "colocated,accellm",
        "--versus",
        "accellm",
    ]
    assert main([*args, "--out", str(tmp_path)]) == 0
    sweep, versus, capacity = capsys.readouterr().out.split("\n\n")
    rows = sweep.splitlines()[2:]
    assert [r.split()[:2] for r in rows] == [
        ["8", "colocated"],
        ["8", "accellm"],
        ["16", "colocated"],
        ["16", "accellm"],
    ]
    assert [r.split()[:2] for r in versus.splitlines()[2:]] == [["8", "colocated"], ["16", "colocated"]]
    assert [r.split()[0] for r in capacity.splitlines()[2:]] == ["colocated", "accellm"]
    doc = json.loads((tmp_path / "sweep.json").read_text())
    assert [(p["rate_rps"], p["policy"]) for p in doc["points"]] == [
        (8.0, "colocated"),
        (8.0, "accellm"),
        (16.0, "colocated"),
        (16.0, "accellm"),
    ]
    spans = {p["rate_rps"]: p["summary"]["span_s"] for p in doc["points"] if p["policy"] == "colocated"}
    # Half the arrival rate, about twice the arrival window (40 / 8 - 40 / 16 = 2.5 s longer; the
    # span also holds the last requests' service time, which does not depend on the rate).
    assert spans[8.0] - spans[16.0] > 1.0
    assert (tmp_path / "sweep_latency.png").exists()
    assert (tmp_path / "sweep_throughput.png").exists()
