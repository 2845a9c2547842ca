"""Acceptance of the shipped A100 calibration against the measured data in ../shared/data/measured-a100.

* ``llmtwin ops`` within 10% median absolute error of Vidur's medians for the projection and MLP
  ops, tokens 1-4096, each TP degree 1/2/4/8 separately;
* ``llmtwin collective`` within 15% for intra-node allreduce, each world size;
* ``llmtwin step`` with the calibrated engine profile within 10% median and 25% at the 90th
  percentile over the prefill rows and over the decode rows of splitwise_dgx_a100_iterations.csv.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections import defaultdict
from pathlib import Path

import pytest

from llmtwin.calibrate.measured import read_collective_file, read_iteration_file, read_op_file
from llmtwin.cli.main import main
from llmtwin.hardware import HardwareCatalog
from llmtwin.models import ModelCatalog
from llmtwin.physics.graph import BatchShape
from llmtwin.physics.overhead import EngineCatalog
from llmtwin.physics.step import StepModel

MEASURED = Path(__file__).resolve().parents[2] / "shared" / "data" / "measured-a100"
pytestmark = pytest.mark.skipif(not MEASURED.is_dir(), reason=f"measured data not found at {MEASURED}")

VIDUR_MODELS = {
    "Llama-2-7b-hf": "llama-2-7b",
    "Llama-2-70b-hf": "llama-2-70b",
    "Meta-Llama-3-8B": "llama-3-8b",
    "Meta-Llama-3-70B": "llama-3-70b",
}
PROJECTION_AND_MLP_OPS = ("attn_pre_proj", "attn_post_proj", "mlp_up_proj", "mlp_act", "mlp_down_proj")
ENGINE = "splitwise-dgx-a100"


def cli_csv(capsys: pytest.CaptureFixture[str], *argv: str) -> list[dict[str, str]]:
    """Run ``llmtwin ARGV`` in-process and parse its CSV output."""
    assert main(list(argv)) == 0
    return list(csv.DictReader(io.StringIO(capsys.readouterr().out)))


def test_ops_within_10_percent_of_vidur_per_op_and_tp(capsys: pytest.CaptureFixture[str]) -> None:
    """Projection and MLP ops: median |pred/meas - 1| <= 10% for every (op, TP), tokens 1-4096."""
    errors: dict[tuple[str, int], list[float]] = defaultdict(list)
    for vidur_name, model in VIDUR_MODELS.items():
        measured = read_op_file(MEASURED / f"{vidur_name}.mlp.csv")
        for tp in (1, 2, 4, 8):
            points = {(s.op, s.tokens): s.time_s for s in measured if s.tp == tp and s.tokens <= 4096}
            tokens = sorted({t for _, t in points})
            rows = cli_csv(
                capsys, "ops", "--hardware", "a100-80g", "--model", model, "--tp", str(tp),
                "--tokens", ",".join(map(str, tokens)), "--format", "vidur-csv",
            )  # fmt: skip
            for row in rows:
                for op in PROJECTION_AND_MLP_OPS:
                    meas = points[(op, int(row["num_tokens"]))]
                    pred = float(row[f"time_stats.{op}.median"]) * 1e-3
                    errors[(op, tp)].append(abs(pred / meas - 1))
    medians = {k: statistics.median(v) for k, v in errors.items()}
    assert len(medians) == len(PROJECTION_AND_MLP_OPS) * 4
    assert max(medians.values()) <= 0.10, medians


def test_allreduce_within_15_percent_intra_node(capsys: pytest.CaptureFixture[str]) -> None:
    """Intra-node allreduce: median |pred/meas - 1| <= 15% for each world size 2, 4, 8."""
    samples = [s for s in read_collective_file(MEASURED / "a100_dgx.all_reduce.csv") if s.intra_node]
    for world in (2, 4, 8):
        mine = {s.size_bytes: s.time_s for s in samples if s.world == world}
        rows = cli_csv(
            capsys, "collective", "--hardware", "a100-80g", "--op", "all_reduce", "--world", str(world),
            "--bytes", ",".join(map(str, sorted(mine))), "--format", "vidur-csv",
        )  # fmt: skip
        assert len(rows) == len(mine)
        errs = [abs(float(r["time_stats.all_reduce.median"]) * 1e-3 / mine[int(r["size"])] - 1) for r in rows]
        assert statistics.median(errs) <= 0.15, (world, statistics.median(errs))


def mean_decode_s(sm: StepModel, batch: int, prompt: int, generated: int) -> float:
    """Mean decode iteration as contexts grow from ``prompt`` to ``prompt + generated`` (17 points:
    decode time is close to linear in context)."""
    contexts = [prompt + round(i * (generated - 1) / 16) for i in range(17)]
    return statistics.fmean(sm.time(BatchShape.decode(batch, c)) for c in contexts)


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10, method="inclusive")[-1]


def test_iterations_within_10_percent_median_25_at_p90_with_calibrated_engine() -> None:
    """Splitwise DGX-A100 rows: |pred/meas - 1| median <= 10% and p90 <= 25%, for prefill rows and
    for decode rows."""
    hw = HardwareCatalog().get("a100-80g")
    engine = EngineCatalog().get(ENGINE)
    models = ModelCatalog()
    cache: dict[tuple[str, int], StepModel] = {}
    prefill_cache: dict[tuple[str, int, int, int], float] = {}
    decode_cache: dict[tuple[str, int, int, int, int], float] = {}
    prefill_err: list[float] = []
    decode_err: list[float] = []
    for s in read_iteration_file(MEASURED / "splitwise_dgx_a100_iterations.csv"):
        key = (s.model, s.tp)
        if key not in cache:
            cache[key] = StepModel(hw, models.get(s.model), s.tp, engine=engine, check_fit=False)
        sm = cache[key]
        pk = (s.model, s.tp, s.batch, s.prompt)
        if pk not in prefill_cache:
            prefill_cache[pk] = sm.time(BatchShape.prefill(s.batch, s.prompt))
        dk = (*pk, s.generated)
        if dk not in decode_cache:
            decode_cache[dk] = mean_decode_s(sm, s.batch, s.prompt, s.generated)
        prefill_err.append(abs(prefill_cache[pk] / s.prefill_s - 1))
        decode_err.append(abs(decode_cache[dk] / s.decode_s - 1))
    assert len(prefill_err) == 420
    assert statistics.median(prefill_err) <= 0.10
    assert statistics.median(decode_err) <= 0.10
    assert p90(prefill_err) <= 0.25
    assert p90(decode_err) <= 0.25


def test_step_cli_reports_the_step_model_time(capsys: pytest.CaptureFixture[str]) -> None:
    """``llmtwin step --json`` time_s is StepModel.time of that iteration, engine included."""
    assert main(["step", "--hardware", "a100-80g", "--model", "llama-2-70b", "--tp", "8", "--phase", "decode",
                 "--batch", "4", "--context", "700", "--engine", ENGINE, "--json"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    sm = StepModel(
        HardwareCatalog().get("a100-80g"), ModelCatalog().get("llama-2-70b"), 8,
        engine=EngineCatalog().get(ENGINE),
    )  # fmt: skip
    assert json.loads(out)["time_s"] == pytest.approx(sm.time(BatchShape.decode(4, 700)), rel=1e-9)
