"""L2 design sweep: cost model, working-set effect without prefetch, optimum."""

from __future__ import annotations

import itertools

import pytest
from preserve_builders import MIB, step_model

from llmtwin.errors import ConfigurationError
from llmtwin.physics.graph import BatchShape
from llmtwin.physics.step import StepModel
from llmtwin.preserve import step_costs
from llmtwin.preserve.die_cost import COST_SOURCES, CostModel
from llmtwin.preserve.sensitivity import band_of, l2_hbm_ratio, sensitivity, with_l2_hbm_ratio
from llmtwin.preserve.sweep import SweepResult, split_mix, sweep_l2


def test_every_cost_parameter_has_a_source() -> None:
    """Each cost-model field names a source or says it is an assumption."""
    assert set(COST_SOURCES) == set(CostModel().to_dict())
    assert all(text.startswith(("[S]", "[E]", "[V]")) for text in COST_SOURCES.values())


def test_device_cost_grows_faster_than_linearly_with_l2() -> None:
    """SRAM adds die area and lowers yield, so each extra MiB costs more than the one before."""
    c = CostModel()
    costs = [c.device_usd(mib * MIB, 64e9) for mib in (0, 128, 256, 384)]
    steps = [b - a for a, b in itertools.pairwise(costs)]
    assert all(s > 0 for s in steps)
    assert steps[0] < steps[1] < steps[2]


def test_cost_overrides_and_unknown_names() -> None:
    """Overrides replace named fields; an unknown name is a ConfigurationError."""
    c = CostModel().with_overrides({"hbm_usd_per_gb": 0.0, "package_usd": 0.0})
    assert c.device_usd(0.0, 64e9) == pytest.approx(c.die_usd(0.0))
    with pytest.raises(ConfigurationError):
        CostModel().with_overrides({"gold_usd": 1.0})


def test_small_l2_forces_gemm_operand_rereads() -> None:
    """Without prefetch, an L2 smaller than a GEMM's activation operand re-reads it from HBM per tile."""
    sm = step_model()
    shape = BatchShape.decode(64, 1024)
    big = step_costs(sm, shape, 64 * MIB)
    tiny = step_costs(sm, shape, 0.01 * MIB)
    gemm = next(i for i, op in enumerate(big.ops) if op.kind == "gemm")
    assert big.reread_bytes(gemm) == 0.0
    assert tiny.reread_bytes(gemm) > 0.0
    assert tiny.vanilla_step_s > big.vanilla_step_s


def test_sweep_rows_and_optimum() -> None:
    """Every L2 size has a row with and without prefetch; the optima are the perf/cost maxima."""
    r = sweep_l2(step_model(), [0.01, 4, 64, 512], batches=[1, 8], contexts=[1024, 8192])
    assert [(x.l2_mb, x.prefetch) for x in r.rows] == [
        (mib, flag) for mib in (0.01, 4, 64, 512) for flag in (False, True)
    ]
    for flag, best in ((False, r.optimum.without_prefetch_mb), (True, r.optimum.with_prefetch_mb)):
        rows = [x for x in r.rows if x.prefetch == flag]
        assert max(rows, key=lambda x: x.perf_per_cost).l2_mb == best
    without = {x.l2_mb: x for x in r.rows if not x.prefetch}
    with_pf = {x.l2_mb: x for x in r.rows if x.prefetch}
    assert all(with_pf[m].perf >= without[m].perf * (1 - 1e-12) for m in without)
    assert without[0.01].perf < without[4].perf  # operands spill out of a tiny L2
    assert without[64].perf == pytest.approx(without[512].perf)  # beyond the working set L2 buys nothing


def test_prefetch_moves_the_optimum_to_a_larger_l2() -> None:
    """On a 910B2 template the prefetch-aware optimum is a larger L2 with better perf per cost."""
    r = sweep_l2(step_model(), [4, 16, 64, 256], batches=[1, 8], contexts=[4096])
    assert r.optimum.with_prefetch_mb > r.optimum.without_prefetch_mb
    assert r.optimum.perf_per_cost_gain > 1.0


def test_mix_cells_that_do_not_fit_are_left_out() -> None:
    """Workloads whose KV cache does not fit next to the weights are excluded, not simulated."""
    sm = step_model(tp=1, prec="bf16")
    fits, out = split_mix(sm, [1, 4096], [1024, 131072])
    assert (1, 1024) in [(w.batch, w.context) for w in fits]
    assert (4096, 131072) in [(w.batch, w.context) for w in out]


def test_sensitivity_reruns_the_sweep_over_the_uncalibrated_inputs() -> None:
    """--vary: every combination is swept; the allreduce latency moves the answer (windows and
    exposed step time both change), a faster L2 (cheaper reads of prefetched bytes) raises the
    PRESERVE speedup; the band spans the points."""
    sm = step_model()

    def sweep(model: StepModel) -> SweepResult:
        return sweep_l2(model, [4, 64, 256], batches=[8], contexts=[4096])

    grid = {"allreduce_alpha_us": [5.0, 60.0], "l2_hbm_ratio": [2.0, 6.0]}
    points = sensitivity(sm, grid, sweep)
    assert [tuple(p.inputs.values()) for p in points] == [(5.0, 2.0), (5.0, 6.0), (60.0, 2.0), (60.0, 6.0)]
    by = {tuple(p.inputs.values()): p.speedup_at_optimum for p in points}
    assert by[(60.0, 2.0)] != pytest.approx(by[(5.0, 2.0)], rel=1e-3)
    assert by[(5.0, 6.0)] > by[(5.0, 2.0)]
    lo, hi = band_of(points)["speedup_at_optimum"]
    assert lo == min(by.values())
    assert hi == max(by.values())
    assert l2_hbm_ratio(with_l2_hbm_ratio(sm.hw, 3.7)) == pytest.approx(3.7)
    with pytest.raises(ConfigurationError, match="--vary"):
        sensitivity(sm, {"hbm_tb_s": [1.0]}, sweep)
