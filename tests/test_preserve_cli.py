"""``llmtwin preserve`` and ``llmtwin l2-sweep``: JSON keys, tables, PNGs, errors."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from llmtwin.cli.commands import l2_sweep, preserve, step
from llmtwin.errors import ConfigurationError

ISSUE_ARGS = ["--hardware", "ascend-910b2", "--model", "llama-3-70b", "--tp", "4"]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Parse and run one of the commands as the CLI does, returning stdout."""
    parser = argparse.ArgumentParser(prog="llmtwin")
    sub = parser.add_subparsers(dest="command")
    preserve.register(sub)
    l2_sweep.register(sub)
    step.register(sub)
    args = parser.parse_args(argv)
    assert args.func(args) == 0
    return capsys.readouterr().out


def test_preserve_json_has_the_issue_keys(capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's command prints the three step times, the speedup and a per-layer timeline."""
    argv = ["preserve", *ISSUE_ARGS, "--batch", "8", "--context", "16384", "--precision", "int8", "--json"]
    out = json.loads(run(argv, capsys))
    for key in ("vanilla_step_s", "fused_step_s", "preserve_step_s", "speedup", "layers", "detail"):
        assert key in out
    assert out["speedup"] == pytest.approx(out["vanilla_step_s"] / out["preserve_step_s"])
    assert out["preserve_step_s"] <= out["vanilla_step_s"]
    assert out["fused_step_s"] <= out["vanilla_step_s"]
    assert [row["layer"] for row in out["layers"]] == list(range(-1, 81))
    assert sum(row["preserve_s"] for row in out["layers"]) == pytest.approx(out["preserve_step_s"])
    assert out["detail"]["windows"]
    assert out["detail"]["windows"][0]["items"]


def test_preserve_table_writes_a_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --json the command prints a table and writes the timeline PNG to --out."""
    argv = ["preserve", *ISSUE_ARGS, "--batch", "4", "--context", "2048", "--out", str(tmp_path)]
    text = run(argv, capsys)
    assert "PRESERVE" in text
    assert "window at mlp_allreduce" in text
    png = tmp_path / "preserve_timeline.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_preserve_rejects_a_kv_cache_that_does_not_fit(capsys: pytest.CaptureFixture[str]) -> None:
    """A batch whose KV cache exceeds HBM is a ConfigurationError, not a number."""
    with pytest.raises(ConfigurationError, match="do not fit"):
        run(["preserve", *ISSUE_ARGS, "--batch", "512", "--context", "131072", "--json"], capsys)


def test_l2_sweep_json_has_the_issue_keys(capsys: pytest.CaptureFixture[str]) -> None:
    """l2-sweep prints rows with perf, cost and perf/cost with and without prefetch, and the optimum."""
    argv = [
        "l2-sweep",
        *ISSUE_ARGS,
        "--json",
        "--l2-sizes",
        "4,64,256",
        "--batches",
        "8",
        "--contexts",
        "4096",
    ]
    out = json.loads(run(argv, capsys))
    assert {(r["l2_mb"], r["prefetch"]) for r in out["rows"]} == {
        (m, f) for m in (4.0, 64.0, 256.0) for f in (False, True)
    }
    for row in out["rows"]:
        assert set(row) == {"l2_mb", "prefetch", "perf", "cost", "perf_per_cost"}
        assert row["perf_per_cost"] == pytest.approx(row["perf"] / row["cost"])
    assert set(out["optimum"]) == {"without_prefetch_mb", "with_prefetch_mb", "perf_per_cost_gain"}
    assert out["workloads"] == [{"batch": 8, "context": 4096}]


def test_l2_sweep_table_and_cost_override(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The table run writes the sweep PNG; --cost overrides a cost parameter."""
    argv = ["l2-sweep", *ISSUE_ARGS, "--l2-sizes", "4,64", "--batches", "1", "--contexts", "1024",
            "--cost", "package_usd=0", "--out", str(tmp_path)]  # fmt: skip
    text = run(argv, capsys)
    assert "optimum L2" in text
    assert (tmp_path / "l2_sweep.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ConfigurationError, match="unknown cost parameter"):
        run([*argv[:-2], "--cost", "gold=1"], capsys)


def test_preserve_grid_marks_cells_that_do_not_fit(capsys: pytest.CaptureFixture[str]) -> None:
    """--grid-batches/--grid-contexts add speedups per cell, N/A (fits: false) where HBM is too small."""
    argv = ["preserve", *ISSUE_ARGS, "--precision", "int8", "--json",
            "--grid-batches", "1,256", "--grid-contexts", "1024,32768"]  # fmt: skip
    grid = {(c["batch"], c["context"]): c for c in json.loads(run(argv, capsys))["grid"]}
    assert grid[(1, 1024)]["fits"]
    assert grid[(1, 1024)]["speedup"] >= 1.0
    assert grid[(1, 1024)]["fused_speedup"] >= 1.0
    assert not grid[(256, 32768)]["fits"]
    assert "speedup" not in grid[(256, 32768)]


def test_fused_flags_reach_the_baseline(capsys: pytest.CaptureFixture[str]) -> None:
    """--fused-alpha-exposed makes the fused baseline slower than with the latency hidden under the GEMM."""
    argv = ["preserve", *ISSUE_ARGS, "--batch", "8", "--context", "4096", "--json"]
    hidden = json.loads(run(argv, capsys))
    exposed = json.loads(run([*argv, "--fused-alpha-exposed"], capsys))
    assert exposed["config"]["fused"]["hides_alpha"] is False
    assert hidden["fused_step_s"] < exposed["fused_step_s"] <= exposed["vanilla_step_s"]


@pytest.mark.parametrize("engine", ["none", "splitwise-dgx-a100"])
def test_preserve_step_times_equal_llmtwin_step(engine: str, capsys: pytest.CaptureFixture[str]) -> None:
    """preserve's vanilla and PRESERVE step times are `llmtwin step`'s time_s without and with --preserve."""
    device = [*ISSUE_ARGS, "--precision", "int8", "--engine", engine]
    shape = ["--batch", "8", "--context", "16384"]
    out = json.loads(run(["preserve", *device, *shape, "--json"], capsys))
    plain = json.loads(run(["step", *device, "--phase", "decode", *shape, "--json"], capsys))
    planned = json.loads(run(["step", *device, "--phase", "decode", *shape, "--preserve", "--json"], capsys))
    assert out["vanilla_step_s"] == pytest.approx(plain["time_s"], rel=1e-12)
    assert out["preserve_step_s"] == pytest.approx(planned["time_s"], rel=1e-12)
    assert out["vanilla_device_s"] == pytest.approx(plain["device_time_s"], rel=1e-12)
    assert out["preserve_device_s"] == pytest.approx(planned["device_time_s"], rel=1e-12)
    assert out["preserve_step_s"] < out["vanilla_step_s"]


def test_engine_dispatch_queue_is_in_the_preserve_step(capsys: pytest.CaptureFixture[str]) -> None:
    """With an engine profile the step is more than device work plus serial overhead: dispatch queues too."""
    argv = ["preserve", *ISSUE_ARGS, "--precision", "int8", "--batch", "8", "--context", "16384", "--json"]
    out = json.loads(run([*argv, "--engine", "splitwise-dgx-a100"], capsys))
    assert out["per_kernel_launch_s"] > 0
    for scheme in ("vanilla", "fused", "preserve"):
        device_plus_serial = out[f"{scheme}_device_s"] + out["engine_overhead_s"]
        assert out[f"{scheme}_step_s"] > device_plus_serial * (1 + 1e-6)
