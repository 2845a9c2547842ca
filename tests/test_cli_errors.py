"""The CLI on catalog errors: one line on stderr starting with ``llmtwin:``, exit code 2, no traceback."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmtwin.catalog_files import CATALOG_PATH_ENV
from llmtwin.cli.main import build_parser

REQUIRED_NAMES = ["h100-sxm", "tpu-v5p", "ascend-910b4", "llama-3.1-405b", "mixtral-8x7b", "bloom-176b"]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``llmtwin ARGS`` in a fresh interpreter, as a user would."""
    full_env = {k: v for k, v in os.environ.items() if k != CATALOG_PATH_ENV} | (env or {})
    return subprocess.run(
        [sys.executable, "-m", "llmtwin.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=full_env,
        check=False,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("llmtwin:")
    for fragment in fragments:
        assert fragment in lines[0]


def test_list_prints_the_shipped_catalog() -> None:
    """`llmtwin list` exits 0 and names shipped devices and models."""
    result = run_cli("list")
    assert result.returncode == 0, result.stderr
    for name in REQUIRED_NAMES:
        assert name in result.stdout
    assert result.stderr == ""


def test_malformed_hardware_file_in_catalog_dir(tmp_path: Path) -> None:
    """A user hardware file missing a field: one line naming the file and the field, exit 2."""
    bad = tmp_path / "hardware" / "my-npu.toml"
    bad.parent.mkdir()
    bad.write_text('name = "my-npu"\n[compute]\nbf16_tflops = 100.0\n[link]\ntopology = "ring"\n')
    assert_one_line_error(run_cli("list", "--catalog", str(tmp_path)), str(bad), "'memory' is missing")


def test_hardware_file_that_is_not_toml(tmp_path: Path) -> None:
    """A hardware file with a TOML syntax error: one line naming the file, exit 2."""
    bad = tmp_path / "hardware" / "broken.toml"
    bad.parent.mkdir()
    bad.write_text("name = broken\n")
    assert_one_line_error(run_cli("list", "--catalog", str(tmp_path)), str(bad), "not valid TOML")


def test_malformed_model_file_on_catalog_path(tmp_path: Path) -> None:
    """A model file from LLMTWIN_CATALOG_PATH whose heads are not a multiple of its KV heads: exit 2."""
    bad = tmp_path / "models" / "odd-lm.toml"
    bad.parent.mkdir()
    bad.write_text(
        'name = "odd-lm"\nhidden = 1024\nlayers = 2\nheads = 8\nkv_heads = 3\nhead_dim = 128\n'
        'intermediate = 4096\nvocab = 1000\ngated_mlp = true\nactivation = "silu"\nnorm = "rmsnorm"\n'
        'positional = "rope"\ntied_embeddings = false\n'
    )
    result = run_cli("list", env={CATALOG_PATH_ENV: str(tmp_path)})
    assert_one_line_error(result, str(bad), "must be a multiple of kv_heads")


def _device_commands() -> list[str]:
    """Registered sub-commands whose only required options are --hardware and --model."""
    parser = build_parser()
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                options = {s for a in sub._actions for s in a.option_strings}
                required = {a.dest for a in sub._actions if a.required}
                if {"--hardware", "--model", "--tp"} <= options and required <= {"hardware", "model"}:
                    found.append(name)
    return sorted(found)


DEVICE_ERRORS = [
    (["--hardware", "h300", "--model", "llama-2-7b"], "unknown hardware 'h300'"),
    (["--hardware", "h100-sxm", "--model", "llama-9"], "unknown model 'llama-9'"),
    (["--hardware", "tpu-v5e", "--model", "llama-3.1-405b", "--tp", "1"], "do not fit"),
    (
        ["--hardware", "h100-sxm", "--model", "qwen2.5-7b", "--tp", "8"],
        "does not divide the 28 attention heads",
    ),
]


@pytest.mark.parametrize(("argv", "message"), DEVICE_ERRORS)
def test_device_commands_reject_unknown_names_and_impossible_configurations(
    argv: list[str], message: str
) -> None:
    """Every sub-command that takes --hardware/--model/--tp turns bad input into one line and exit 2."""
    commands = _device_commands()
    if not commands:
        pytest.skip("no registered sub-command takes --hardware/--model/--tp alone yet")
    for command in commands:
        assert_one_line_error(run_cli(command, *argv), message)


def test_a_reader_that_stops_reading_ends_the_command_quietly() -> None:
    """``llmtwin ... | head -1``: exit code 0, nothing on stderr."""
    tokens = ",".join(map(str, range(1, 2000)))  # about 250 KB of CSV: more than a pipe holds
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmtwin.cli.main", "ops", "--hardware", "h100-sxm", "--model",
         "llama-3-70b", "--tokens", tokens, "--format", "vidur-csv"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stderr is not None
    assert proc.stdout.readline()
    proc.stdout.close()
    assert proc.wait(60) == 0
    assert proc.stderr.read() == b""


def test_a_broken_pipe_of_the_command_itself_is_no_success(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only standard output's reader going away is quiet: a pipe of the command's own that breaks
    (a child that died, a socket) is not turned into exit code 0."""
    from llmtwin.cli import main as cli
    from llmtwin.cli.commands import list_catalog

    def broken(args: argparse.Namespace) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(list_catalog, "run", broken)
    with pytest.raises(BrokenPipeError):
        cli.main(["list"])
