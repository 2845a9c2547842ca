"""`llmtwin trace-stats` and scenario errors through the real command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from scenario_builders import scenario_table, write_scenario


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``llmtwin ARGS`` in a fresh interpreter, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "llmtwin.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_trace_stats_json_of_the_conversation_trace() -> None:
    """`trace-stats azure-conv --json` reports 19,366 requests and the trace's token figures."""
    result = run_cli("trace-stats", "azure-conv", "--json")
    assert result.returncode == 0, result.stderr
    (entry,) = json.loads(result.stdout)
    st = entry["stats"]
    assert st["count"] == 19_366
    assert st["prompt_tokens"]["median"] == 1020
    assert st["output_tokens"]["max"] == 1000
    assert 1.0 < st["interarrival_cv"] < 1.2


def test_trace_stats_table_lists_every_shipped_trace() -> None:
    """Without arguments, every named trace is printed with its rate and percentiles."""
    result = run_cli("trace-stats")
    assert result.returncode == 0, result.stderr
    for fragment in ("azure-conv", "azure-code", "arrival rate", "inter-arrival CV", "p99", "prompt tokens"):
        assert fragment in result.stdout


def test_trace_stats_of_a_scenario_workload_with_overrides() -> None:
    """`--scenario demo --set workload.requests=50` describes those 50 requests and the capacity."""
    result = run_cli("trace-stats", "--scenario", "demo", "--set", "workload.requests=50", "--json")
    assert result.returncode == 0, result.stderr
    (entry,) = json.loads(result.stdout)
    assert entry["stats"]["count"] == 50
    assert entry["capacity"]["saturation_rps"] > 0


def test_unknown_trace_is_exit_2_with_one_line() -> None:
    """An unknown trace name exits 2 with one `llmtwin:` line and no traceback."""
    result = run_cli("trace-stats", "azure-chat")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("llmtwin: unknown trace 'azure-chat'")


def test_bad_scenario_is_exit_2_with_one_line_naming_file_and_field(tmp_path: Path) -> None:
    """A scenario with a bad field exits 2 with one line naming the file and the field."""
    path = write_scenario(tmp_path, scenario_table(cluster={"instances": 0}))
    result = run_cli("trace-stats", "--scenario", str(path))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"llmtwin: {path}: field 'cluster.instances' must be > 0")
