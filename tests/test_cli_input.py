"""Input the command line refuses before any work: one line starting with ``llmtwin:``, exit 2.

Unwritable or invalid ``--out`` (checked before the run, not after it), files that are not
UTF-8, ``nan``/``inf`` in hardware files, runs needing more memory than the machine has, more
device processes than instances.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from llmtwin.catalog_files import DATA_DIR
from llmtwin.cli.main import main


def refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The one stderr line of a command that must fail with exit code 2."""
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("llmtwin: "), err
    return err


SMALL = ["--set", "workload.requests=5", "--quiet", "--no-plots"]


@pytest.mark.parametrize("command", ["simulate", "compare", "sweep", "up"])
def test_an_output_folder_that_cannot_be_written_is_refused_before_the_run(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file in the way of --out, or --out inside a file: refused at once (no run, no traceback)."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert "exists and is not a folder" in refused([command, "demo", *SMALL, "--out", str(blocker)], capsys)
    err = refused([command, "demo", *SMALL, "--out", str(blocker / "sub")], capsys)
    assert f"--out {blocker / 'sub'}: cannot write there" in err


def test_files_that_are_not_utf8_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A scenario file and a trace file with bytes that are not UTF-8."""
    scenario = tmp_path / "latin1.toml"
    scenario.write_bytes(b'name = "caf\xe9"\n')
    assert "not UTF-8 text" in refused(["simulate", str(scenario)], capsys)
    trace = tmp_path / "t.csv"
    trace.write_bytes(b"TIMESTAMP,ContextTokens,GeneratedTokens\n0.0,1\xff0,5\n")
    overrides = ["--set", "workload.arrival=trace", "--set", f"workload.trace={trace}"]
    assert "t.csv: not UTF-8 text" in refused(["simulate", "demo", *overrides, "--quiet"], capsys)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_numbers_in_a_hardware_file_are_refused(
    value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """TOML allows nan and inf; no hardware field can take one."""
    text = (DATA_DIR / "hardware" / "h100-sxm.toml").read_text()
    bad = tmp_path / "h100x.toml"
    bad.write_text(
        text.replace('name = "h100-sxm"', 'name = "h100x"').replace("hbm_tb_s = 3.35", f"hbm_tb_s = {value}")
    )
    err = refused(["simulate", "demo", "--set", f"cluster.hardware={bad}", *SMALL], capsys)
    assert f"field 'memory.hbm_tb_s' is {float(value)!r}: numbers must be finite" in err
    err = refused(["step", "--hardware", str(bad), "--model", "llama-2-7b", "--phase", "decode"], capsys)
    assert "numbers must be finite" in err


@pytest.mark.parametrize("command", ["simulate", "up"])
def test_a_run_that_needs_more_memory_than_the_machine_has_is_refused(
    command: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A --set asking for a hundred million requests: refused before generating one (up's
    services would also refuse it for their request limit, lifted here)."""
    monkeypatch.setenv("TWIN_MAX_REQUESTS", str(10**9))
    err = refused([command, "demo", "--set", "workload.requests=100000000", "--quiet"], capsys)
    assert "GiB of memory" in err
    assert "available" in err


def test_up_refuses_more_device_processes_than_instances(capsys: pytest.CaptureFixture[str]) -> None:
    """--device-processes 50 for 4 instances is an error, not 53 processes."""
    err = refused(["up", "demo", "--device-processes", "50"], capsys)
    assert "scenario 'demo' has 4 instances, one device process per instance at most" in err


def test_up_refuses_a_run_over_the_services_limits(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The services' limits (TWIN_MAX_REQUESTS, ...) are checked by up before starting them."""
    monkeypatch.setenv("TWIN_MAX_REQUESTS", "100")
    err = refused(["up", "demo", "--set", "workload.requests=500"], capsys)
    assert "run of 500 requests exceeds the limit of 100 per run" in err


def test_up_tls_needs_all_three_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "--tls-ca, --tls-cert and --tls-key together" in refused(
        ["up", "demo", "--tls-ca", "x.pem"], capsys
    )
    pem = tmp_path / "a.pem"
    pem.write_text("")
    flags = ["--tls-ca", str(pem), "--tls-cert", str(pem), "--tls-key", str(tmp_path / "missing.pem")]
    assert "missing.pem: no such file" in refused(["up", "demo", *flags], capsys)


def test_a_scenario_outside_the_folders_up_names_is_not_readable_by_its_services(tmp_path: Path) -> None:
    """up lets its services read the folders of the files on its own command line, nothing else."""
    from llmtwin.cli.commands.up import named_dirs

    scenario = tmp_path / "s" / "x.toml"
    scenario.parent.mkdir()
    shutil.copy(DATA_DIR / "scenarios" / "demo.toml", scenario)
    trace = tmp_path / "t" / "trace.csv"
    dirs = named_dirs(str(scenario), ["workload.requests=5", f"workload.trace={trace}"])
    assert dirs == sorted([str(scenario.parent.resolve()), str(trace.parent.resolve())])
    assert named_dirs("demo", ["workload.requests=5"]) == []
