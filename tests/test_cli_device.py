"""The device commands (ops, collective, step, calibrate): output formats and exit codes."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from llmtwin.cli.main import main
from llmtwin.physics.graph import VIDUR_OPS

A100_70B = ["--hardware", "a100-80g", "--model", "llama-2-70b"]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``llmtwin ARGV`` in-process: (exit code, stdout, stderr)."""
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("llmtwin:")
    for f in fragments:
        assert f in lines[0]


def test_ops_vidur_csv_has_vidur_columns(capsys: pytest.CaptureFixture[str]) -> None:
    """``ops --format vidur-csv``: one row per token count, Vidur's exact column names, ms values."""
    code, out, _ = run(
        capsys, "ops", *A100_70B, "--tp", "4", "--tokens", "1,2,4,4096", "--format", "vidur-csv"
    )
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["num_tokens"] for r in rows] == ["1", "2", "4", "4096"]
    assert {r["num_tensor_parallel_workers"] for r in rows} == {"4"}
    for op in VIDUR_OPS:
        values = [float(r[f"time_stats.{op}.median"]) for r in rows]
        assert values == sorted(values)
        assert 0.0005 < values[0] < 1.0  # milliseconds, not seconds


def test_ops_prices_one_layer_even_where_the_model_would_not_fit(capsys: pytest.CaptureFixture[str]) -> None:
    """Llama-2-70B at TP1 does not fit an A100, but its per-layer op times (as Vidur profiles them) exist."""
    code, out, _ = run(capsys, "ops", *A100_70B, "--tp", "1", "--tokens", "1", "--format", "vidur-csv")
    assert code == 0
    assert float(next(csv.DictReader(io.StringIO(out)))["time_stats.mlp_up_proj.median"]) > 0.4


def test_ops_leaves_absent_ops_empty(capsys: pytest.CaptureFixture[str]) -> None:
    """An ALiBi model has no rotary op: its column is present but empty."""
    code, out, _ = run(capsys, "ops", "--hardware", "a100-80g", "--model", "bloom-176b", "--tp", "8",
                       "--tokens", "16", "--format", "vidur-csv")  # fmt: skip
    assert code == 0
    row = next(csv.DictReader(io.StringIO(out)))
    assert row["time_stats.attn_rope.median"] == ""
    assert float(row["time_stats.mlp_up_proj.median"]) > 0


def test_collective_vidur_csv(capsys: pytest.CaptureFixture[str]) -> None:
    """``collective --format vidur-csv``: size, num_workers, time_stats.all_reduce.median (ms)."""
    code, out, _ = run(capsys, "collective", "--hardware", "a100-80g", "--op", "all_reduce", "--world", "8",
                       "--bytes", "2048,1048576,67108864", "--format", "vidur-csv")  # fmt: skip
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [int(r["size"]) for r in rows] == [2048, 1048576, 67108864]
    assert {r["num_workers"] for r in rows} == {"8"}
    times = [float(r["time_stats.all_reduce.median"]) for r in rows]
    assert 0.01 < times[0] < times[1] < times[2] < 5.0


def test_collective_across_nodes_is_slower(capsys: pytest.CaptureFixture[str]) -> None:
    """``--devices-per-node 1`` puts two workers on two nodes: the NIC, not NVLink, carries it."""
    args = ["collective", "--hardware", "a100-80g", "--world", "2", "--bytes", "33554432", "--format", "json"]
    _, inside, _ = run(capsys, *args)
    _, across, _ = run(capsys, *args, "--devices-per-node", "1")
    assert json.loads(across)["rows"][0]["time_ms"] > 5 * json.loads(inside)["rows"][0]["time_ms"]


@pytest.mark.parametrize(
    ("phase", "size"), [("prefill", ["--prompt", "512"]), ("decode", ["--context", "900"])]
)
def test_step_json_schema(capsys: pytest.CaptureFixture[str], phase: str, size: list[str]) -> None:
    """``step --json``: time_s and an op list with name, time_s, hbm_bytes, l2_bytes, flops."""
    code, out, _ = run(
        capsys, "step", *A100_70B, "--tp", "4", "--phase", phase, "--batch", "2", *size, "--json"
    )
    assert code == 0
    doc = json.loads(out)
    assert doc["time_s"] > 0
    ops = doc["ops"]
    assert len(ops) > 80 * 10
    assert {"name", "time_s", "hbm_bytes", "l2_bytes", "flops"} <= set(ops[0])
    assert sum(op["time_s"] for op in ops) == pytest.approx(doc["time_s"], rel=1e-9)
    assert {f"attn_{phase}", "mlp_up_proj", "attn_allreduce", "lm_head"} <= {op["name"] for op in ops}


def test_step_preserve_serves_bytes_from_l2_and_is_not_slower(capsys: pytest.CaptureFixture[str]) -> None:
    """``--preserve`` moves some weight bytes to L2 and never makes the iteration slower."""
    args = [
        "step",
        *A100_70B,
        "--tp",
        "8",
        "--phase",
        "decode",
        "--batch",
        "8",
        "--context",
        "2000",
        "--json",
    ]
    _, plain, _ = run(capsys, *args)
    _, preserved, _ = run(capsys, *args, "--preserve")
    p, q = json.loads(plain), json.loads(preserved)
    assert sum(op["l2_bytes"] for op in p["ops"]) == 0
    assert sum(op["l2_bytes"] for op in q["ops"]) > 0
    assert q["time_s"] <= p["time_s"]


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["ops", "--hardware", "nope", "--model", "llama-2-7b", "--tokens", "1"], ["unknown hardware 'nope'"]),
        (["ops", "--hardware", "a100-80g", "--model", "nope", "--tokens", "1"], ["unknown model 'nope'"]),
        (["ops", *A100_70B, "--tp", "3", "--tokens", "1"], ["TP 3 does not divide the 64 attention heads"]),
        (["ops", *A100_70B, "--tokens", "1,0"], ["positive integers"]),
        (["step", *A100_70B, "--tp", "1", "--phase", "decode", "--context", "10"], ["do not fit", "80 GB"]),
        (["step", *A100_70B, "--tp", "8", "--phase", "decode", "--prompt", "10"], ["--context"]),
        (["step", *A100_70B, "--tp", "8", "--phase", "prefill", "--batch", "4000", "--prompt", "4096"],
         ["KV cache"]),
        (["step", *A100_70B, "--tp", "8", "--phase", "decode", "--context", "9", "--engine", "nope"],
         ["unknown engine profile 'nope'"]),
        (["collective", "--hardware", "a100-80g", "--world", "8", "--bytes", "x"], ["comma-separated"]),
        (["collective", "--hardware", "a100-80g", "--world", "8", "--bytes", "8", "--devices-per-node", "9"],
         ["--devices-per-node"]),
        (["calibrate", "--hardware", "a100-80g", "--out", "x.toml"], ["nothing to fit"]),
        (["calibrate", "--hardware", "a100-80g", "--ops", "/no/such/dir", "--out", "x.toml"],
         ["no such file or directory"]),
    ],
)  # fmt: skip
def test_errors_are_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], fragments: list[str]
) -> None:
    """Unknown names, impossible configurations and bad inputs: one clear line, exit code 2."""
    code, _, err = run(capsys, *argv)
    assert_one_line_error(code, err, *fragments)


def test_malformed_hardware_file_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A hardware file with a bad value names the file and the field."""
    bad = tmp_path / "broken.toml"
    bad.write_text(
        'name = "broken"\n[compute]\nbf16_tflops = "fast"\n[memory]\nhbm_gb = 1\nhbm_tb_s = 1\nl2_mib = 1\n'
        'l2_tb_s = 1\n[link]\ntopology = "nvswitch"\ngb_s_per_direction = 1\npeer_gb_s_per_direction = 1\n'
        "latency_us = 1\ndevices_per_node = 8\n"
    )
    code, _, err = run(capsys, "ops", "--hardware", str(bad), "--model", "llama-2-7b", "--tokens", "8")
    assert_one_line_error(code, err, "broken.toml", "compute.bf16_tflops")
    bad.write_text("name = [")
    code, _, err = run(capsys, "collective", "--hardware", str(bad), "--world", "2", "--bytes", "8")
    assert_one_line_error(code, err, "not valid TOML")
