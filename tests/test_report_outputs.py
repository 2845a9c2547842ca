"""Output folders of simulate / compare / sweep: files exist, JSON keys, plots are PNGs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from report_builders import make_big_result, make_result

from llmtwin.report.outputs import RunOutput, describe_written, write_compare, write_run, write_sweep
from llmtwin.report.plot_data import cdf_points
from llmtwin.report.summary import summarize
from llmtwin.scenario.spec import SLOSpec

PNG = b"\x89PNG\r\n\x1a\n"


def _run(policy: str = "colocated") -> RunOutput:
    result = make_result(policy=policy)
    return RunOutput(result, summarize(result, SLOSpec()), {"name": "hand-built", "seed": 7})


def test_run_folder_has_every_file(tmp_path: Path) -> None:
    """summary.json (with the effective scenario), both CSVs, scenario.json and four PNG plots."""
    files = write_run(tmp_path, _run())
    names = {f.name for f in files}
    assert names == {
        "summary.json",
        "requests.csv",
        "instances.csv",
        "scenario.json",
        "latency_cdf.png",
        "kv_timeline.png",
        "role_timeline.png",
        "batch_sizes.png",
    }
    doc = json.loads((tmp_path / "summary.json").read_text())
    assert doc["policy"] == "colocated"
    assert doc["requests_completed"] == 2
    assert set(doc["ttft_s"]) >= {"p50", "p90", "p99", "mean"}
    assert doc["effective_scenario"] == {"name": "hand-built", "seed": 7}
    for f in files:
        if f.suffix == ".png":
            assert f.read_bytes().startswith(PNG)


def test_run_folder_without_plots(tmp_path: Path) -> None:
    """plots=False writes only the data files."""
    files = write_run(tmp_path, _run(), plots=False)
    assert not [f for f in files if f.suffix == ".png"]
    assert not list(tmp_path.glob("*.png"))


def test_compare_folder(tmp_path: Path) -> None:
    """One sub-folder per policy, compare.json with relative changes, an overlaid CDF."""
    write_compare(tmp_path, [_run("colocated"), _run("accellm")])
    assert (tmp_path / "colocated" / "requests.csv").exists()
    assert (tmp_path / "accellm" / "summary.json").exists()
    assert (tmp_path / "latency_cdf.png").read_bytes().startswith(PNG)
    doc = json.loads((tmp_path / "compare.json").read_text())
    assert doc["policies"] == ["colocated", "accellm"]
    assert doc["change_vs_baseline"]["accellm"]["TTFT p50 (ms)"] == 0.0
    assert doc["change_vs_baseline"]["accellm"]["idle fraction (%)"] == 0.0


def test_sweep_folder(tmp_path: Path) -> None:
    """sweep.json lists every (rate, policy) point; two versus-load plots."""
    s1 = summarize(make_result(policy="colocated"), SLOSpec())
    s2 = summarize(make_result(policy="accellm"), SLOSpec())
    points = [(1.0, s1), (1.0, s2), (2.0, s1), (2.0, s2)]
    write_sweep(tmp_path, "hand-built", points)
    doc = json.loads((tmp_path / "sweep.json").read_text())
    assert doc["rates_rps"] == [1.0, 2.0]
    assert doc["policies"] == ["colocated", "accellm"]
    assert len(doc["points"]) == 4
    # make_result meets the default SLOs for none of its 3 requests (TBT p99 > 0.2 s)
    assert doc["slo_capacity_rps"] == {"colocated": None, "accellm": None}
    assert (tmp_path / "sweep_latency.png").read_bytes().startswith(PNG)
    assert (tmp_path / "sweep_throughput.png").read_bytes().startswith(PNG)


def test_cdf_thinning_keeps_the_extremes() -> None:
    """A thinned CDF keeps the minimum, the maximum and ends at 1."""
    x, y = cdf_points(np.arange(10_000, dtype=np.float64)[::-1].copy(), max_points=100)
    assert x.size <= 100
    assert (x[0], x[-1], y[-1]) == (0.0, 9999.0, 1.0)


def test_role_strip_merges_repeats() -> None:
    """Consecutive identical roles form one stretch lasting until the next change or the end."""
    inst = make_result().instances[0]
    segs = inst.role_stretches
    assert [(t, r) for t, _, r in segs] == [(0.0, "prefill"), (1.0, "decode"), (2.0, "prefill")]
    assert [d for _, d, _ in segs] == pytest.approx([1.0, 1.0, 0.4])


def test_large_run_plots_quickly(tmp_path: Path) -> None:
    """A 2000-request run with long timelines writes every file (timelines are downsampled)."""
    result = make_big_result(2000, tokens=40)
    files = write_run(tmp_path, RunOutput(result, summarize(result, SLOSpec()), {}))
    assert sum(f.stat().st_size for f in files if f.suffix == ".png") < 1_000_000


def test_describe_written_names_every_file_grouped_by_folder(tmp_path: Path) -> None:
    """The 'wrote' line lists each written file once, under its folder, in the writers' order."""
    files = [tmp_path / "compare.json", tmp_path / "a" / "summary.json", tmp_path / "a" / "requests.csv"]
    line = describe_written(tmp_path, files)
    assert line == f"wrote {tmp_path}/: compare.json; a/: summary.json, requests.csv"
