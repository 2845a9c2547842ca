"""Uncertainty bands: from calibration residuals, carried to other devices, in step/ops output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from llmtwin.calibrate.bands import region_cells
from llmtwin.calibrate.measured import read_iteration_file
from llmtwin.cli.main import main
from llmtwin.errors import CatalogFileError, UnknownEngine
from llmtwin.hardware import HardwareCatalog
from llmtwin.models import ModelCatalog
from llmtwin.physics.bands import ATTENTION_BAND, Band, read_band_table
from llmtwin.physics.graph import BatchShape
from llmtwin.physics.overhead import EngineCatalog
from llmtwin.physics.step import StepModel

ENGINE = "splitwise-dgx-a100"
MEASURED = Path(__file__).resolve().parents[2] / "shared" / "data" / "measured-a100"


def mean_decode_s(sm: StepModel, batch: int, prompt: int, generated: int) -> float:
    """Mean decode iteration over ``generated`` tokens (17 contexts, as the acceptance test)."""
    contexts = [prompt + round(i * (generated - 1) / 16) for i in range(17)]
    return float(np.mean([sm.time(BatchShape.decode(batch, c)) for c in contexts]))


def test_cells_hold_80_percent_of_their_points() -> None:
    """A cell's band is the 10th-90th percentile of its ratios; sparse cells are not written and
    absurd ratios (failed measurements) are left out."""
    rng = np.random.default_rng(0)
    ratios = np.exp(rng.normal(0.0, 0.1, 400))
    points = [(8, 100, float(r)) for r in ratios] + [(8, 100, 17.0), (2, 100, 1.0)]
    cells = region_cells(points, ((1, 512), (513, 4096)))
    assert [(c.tp, c.lo) for c in cells] == [(8, 1), (0, 1)]
    inside = np.mean([(cells[0].band.low <= r <= cells[0].band.high) for r in ratios])
    assert inside == pytest.approx(0.8, abs=0.01)
    assert cells[0].points == 400


def test_lookup_falls_back_from_tp_to_pooled_to_the_nearest_range() -> None:
    table = read_band_table(
        Path("x.toml"),
        {"gemm": [[8, 1, 64, 0.9, 1.1, 10], [0, 1, 64, 0.8, 1.2, 40], [0, 65, 512, 0.7, 1.3, 40]]},
    )
    assert table.lookup("gemm", 8, 32) == Band(0.9, 1.1)
    assert table.lookup("gemm", 2, 32) == Band(0.8, 1.2)
    assert table.lookup("gemm", 8, 100) == Band(0.7, 1.3)
    assert table.lookup("gemm", 8, 9999) == Band(0.7, 1.3)
    assert table.lookup("norm", 8, 32) is None
    with pytest.raises(CatalogFileError, match=r"bands\.gemm"):
        read_band_table(Path("x.toml"), {"gemm": [[8, 64, 1, 0.9, 1.1, 10]]})


def test_the_shipped_engine_band_holds_its_calibration_rows() -> None:
    """Over the measured DGX-A100 rows, predicted x band holds the measured time for close to 80%
    of rows in every phase (each band is an 80% interval of its own region)."""
    if not MEASURED.is_dir():
        pytest.skip("measured data not found")

    hw = HardwareCatalog().get("a100-80g")
    engine = EngineCatalog().get(ENGINE)
    cache: dict[tuple[str, int], StepModel] = {}
    inside: dict[str, list[bool]] = {"prefill": [], "decode": []}
    for s in read_iteration_file(MEASURED / "splitwise_dgx_a100_iterations.csv"):
        sm = cache.setdefault(
            (s.model, s.tp), StepModel(hw, ModelCatalog().get(s.model), s.tp, engine=engine, check_fit=False)
        )
        for phase, shape, measured in (
            ("prefill", BatchShape.prefill(s.batch, s.prompt), s.prefill_s),
            ("decode", BatchShape.decode(s.batch, s.prompt), s.decode_s),
        ):
            t = sm.time(shape) if phase == "prefill" else mean_decode_s(sm, s.batch, s.prompt, s.generated)
            b = sm.band(shape)
            inside[phase].append(t * b.low * 0.999 <= measured <= t * b.high * 1.001)
    for phase, hits in inside.items():
        assert 0.7 <= float(np.mean(hits)) <= 0.95, phase


def test_bands_carried_to_another_device_are_wider_and_hold_the_prediction() -> None:
    a100, h100 = HardwareCatalog().get("a100-80g"), HardwareCatalog().get("h100-sxm")
    model = ModelCatalog().get("llama-2-70b")
    shape = BatchShape.prefill(1, 2048)
    for engine in ("none", ENGINE):
        here = StepModel(a100, model, 8, engine=EngineCatalog().get(engine)).band(shape)
        there = StepModel(h100, model, 8, engine=EngineCatalog().get(engine)).band(shape)
        assert h100.transfer_uncertainty > 0 == a100.transfer_uncertainty
        assert there.low < min(here.low, 1.0)
        assert there.high > max(here.high, 1.0)


def test_attention_takes_its_stated_band_and_device_bands_weigh_ops_by_time() -> None:
    """A pure-physics step's band is the time-weighted mean of its ops' bands, attention at the
    stated band: a long prompt (attention-heavy) leans towards it."""
    sm = StepModel(HardwareCatalog().get("a100-80g"), ModelCatalog().get("llama-2-7b"), 1)
    short, long = sm.band(BatchShape.prefill(1, 256)), sm.band(BatchShape.prefill(1, 16384))
    assert abs(long.high - ATTENTION_BAND.high) < abs(short.high - ATTENTION_BAND.high)


def test_engine_band_edges_price_the_step_at_the_edge(capsys: pytest.CaptureFixture[str]) -> None:
    """``NAME@low`` / ``NAME@high`` multiply every iteration by its band edge; ``step --json``
    reports the same numbers as time_low_s / time_high_s."""
    hw, model = HardwareCatalog().get("h100-sxm"), ModelCatalog().get("llama-2-70b")
    shape = BatchShape.decode(8, 1500)
    nominal = StepModel(hw, model, 4, engine=EngineCatalog().get(ENGINE))
    low = StepModel(hw, model, 4, engine=EngineCatalog().get(f"{ENGINE}@low"))
    high = StepModel(hw, model, 4, engine=EngineCatalog().get(f"{ENGINE}@high"))
    band = nominal.band(shape)
    assert low.time(shape) == pytest.approx(nominal.time(shape) * band.low, rel=1e-12)
    assert high.time(shape) == pytest.approx(nominal.time(shape) * band.high, rel=1e-12)
    with pytest.raises(UnknownEngine, match="band edge"):
        EngineCatalog().get(f"{ENGINE}@mid")
    argv = ["step", "--hardware", "h100-sxm", "--model", "llama-2-70b", "--tp", "4", "--phase", "decode",
            "--batch", "8", "--context", "1500", "--engine", ENGINE, "--json"]  # fmt: skip
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["time_low_s"] == pytest.approx(low.time(shape), rel=1e-9)
    assert out["time_high_s"] == pytest.approx(high.time(shape), rel=1e-9)
    assert out["band"]["from"] == "engine iterations"


def test_ops_json_gives_each_op_its_band(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["ops", "--hardware", "a100-80g", "--model", "llama-2-70b", "--tp", "8", "--tokens", "128,2048",
            "--format", "json"]  # fmt: skip
    assert main(argv) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    for row in rows:
        for op, (low, high) in row["band"].items():
            assert low <= row[op] * 1.5
            assert row[op] / 1.5 <= high


def test_simulate_band_reruns_the_cluster_at_both_edges(capsys: pytest.CaptureFixture[str]) -> None:
    """``simulate --band --json`` adds the summaries of the runs at the low and high edges; a faster
    device gives shorter latencies."""
    argv = ["simulate", "demo", "--set", "workload.requests=30", "--quiet", "--band", "--json"]
    assert main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    for metric in ("ttft_s", "e2e_s"):
        low, high = doc["band"]["low"][metric]["p50"], doc["band"]["high"][metric]["p50"]
        assert low < doc[metric]["p50"] < high
