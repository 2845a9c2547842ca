"""The engine-overhead model: launch pipeline, serial overheads, profile files."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from llmtwin.errors import CatalogFileError, UnknownEngine
from llmtwin.hardware import HardwareCatalog
from llmtwin.models import ModelCatalog
from llmtwin.physics.graph import BatchShape
from llmtwin.physics.overhead import CPU_FIELDS, EngineCatalog, EngineSpec, launch_pipeline
from llmtwin.physics.step import StepModel


def brute_force(before: list[float], layer: list[float], layers: int, after: list[float], c: float) -> float:
    """Kernel by kernel: issued every ``c`` seconds, each starting when issued and the GPU is free."""
    end = 0.0
    for i, g in enumerate([*before, *layer * layers, *after], start=1):
        end = max(end, i * c) + g
    return end


@pytest.mark.parametrize("seed", range(20))
def test_launch_pipeline_matches_kernel_by_kernel_simulation(seed: int) -> None:
    """The O(ops per layer) closed form equals simulating every kernel of every layer."""
    rng = random.Random(seed)
    before = [rng.uniform(0, 50e-6) for _ in range(rng.randint(0, 3))]
    layer = [rng.expovariate(1 / 30e-6) for _ in range(rng.randint(1, 14))]
    after = [rng.uniform(0, 80e-6) for _ in range(rng.randint(0, 3))]
    layers = rng.randint(1, 90)
    c = rng.choice([0.0, 5e-6, 30e-6, 60e-6])
    assert launch_pipeline(before, layer, layers, after, c) == pytest.approx(
        brute_force(before, layer, layers, after, c), rel=1e-9, abs=1e-12
    )


def test_launch_bound_and_gpu_bound_limits() -> None:
    """Long kernels hide dispatch (time ~ GPU sum); tiny ones expose it (time ~ kernels x dispatch)."""
    assert launch_pipeline([], [1e-3] * 10, 8, [], 10e-6) == pytest.approx(80e-3, rel=0.01)
    assert launch_pipeline([], [1e-6] * 10, 8, [], 10e-6) == pytest.approx(80 * 10e-6 + 1e-6, rel=1e-9)


def test_no_engine_time_is_device_time() -> None:
    """With the ``none`` profile an iteration costs exactly its device work."""
    sm = StepModel(HardwareCatalog().get("a100-80g"), ModelCatalog().get("llama-2-7b"), 1)
    for shape in (BatchShape.prefill(2, 300), BatchShape.decode(8, 900)):
        assert sm.time(shape) == pytest.approx(sm.device_time(shape), rel=1e-12)


def test_engine_adds_overheads_and_hides_dispatch_under_long_kernels() -> None:
    """A launch-bound decode pays the dispatch queue; the serial terms add on top; prefill pays more."""
    hw, model = HardwareCatalog().get("a100-80g"), ModelCatalog().get("llama-2-70b")
    engine = EngineSpec(
        name="t", iteration_overhead_s=2e-3, per_sequence_overhead_s=1e-4, per_kernel_launch_s=40e-6,
        prefill_overhead_s=5e-3,
    )  # fmt: skip
    sm = StepModel(hw, model, 8, engine=engine)
    decode = BatchShape.decode(4, 1000)
    kernels = len(sm.ops(decode))
    assert sm.time(decode) >= kernels * 40e-6 + 2e-3 + 4 * 1e-4
    prefill = BatchShape.prefill(1, 4096)
    serial = 2e-3 + 1e-4 + 5e-3
    assert sm.time(prefill) == pytest.approx(sm.device_time(prefill) + serial, rel=0.02)


def test_shipped_engine_profile_loads() -> None:
    """The calibrated splitwise-dgx-a100 profile is in the catalog with positive overheads."""
    e = EngineCatalog().get("splitwise-dgx-a100")
    assert e.per_kernel_launch_s > 0
    assert e.iteration_overhead_s > 0
    assert "llmtwin calibrate" in e.source


def test_engine_file_errors_are_one_line(tmp_path: Path) -> None:
    """Unknown engine names and malformed engine files raise one-line twin errors."""
    with pytest.raises(UnknownEngine, match="unknown engine profile 'nope'"):
        EngineCatalog().get("nope")
    bad = tmp_path / "x.toml"
    bad.write_text('name = "x"\niteration_overhead_us = -1\n')
    with pytest.raises(CatalogFileError, match="iteration_overhead_us"):
        EngineCatalog().get(str(bad))
    bad.write_text('name = "x"\niteration_overhead_us = 1\nlaunch_us = 3\n')
    with pytest.raises(CatalogFileError, match="unknown field"):
        EngineCatalog().get(str(bad))


def test_time_with_a_prefetch_plan_runs_the_engine_over_the_planned_op_times() -> None:
    """time(shape, l2_bytes) = dispatch queue over the planned op times + serial overheads."""
    hw, model = HardwareCatalog().get("a100-80g"), ModelCatalog().get("llama-2-70b")
    engine = EngineSpec(name="t", iteration_overhead_s=1e-3, per_kernel_launch_s=30e-6)
    sm = StepModel(hw, model, 8, engine=engine)
    shape = BatchShape.decode(8, 2000)
    ops = sm.ops(shape)
    plan = {i: op.prefetchable_bytes for i, op in enumerate(ops) if op.name == "mlp_up_proj"}
    planned = [t.time_s for t in sm.timeline(shape, plan)]
    expected = brute_force(planned, [], 0, [], 30e-6) + 1e-3
    assert sm.time(shape, plan) == pytest.approx(expected, rel=1e-9)
    assert sum(planned) < sm.device_time(shape)
    assert sm.time(shape, {}) == sm.time(shape)


def test_cpu_terms_move_with_the_host_and_framework_gpu_work_with_the_device() -> None:
    """On a host twice as fast every CPU term halves; the framework's GPU bytes stay bytes and
    take the device's own streaming bandwidth."""
    engine = EngineSpec(
        name="t", iteration_overhead_s=4e-3, per_kernel_launch_s=40e-6, per_sequence_overhead_s=2e-4,
        per_sequence_vocab_s=1e-9, prefill_overhead_s=6e-3, prefill_pair_bytes=100.0, host_speed=1.0,
    )  # fmt: skip
    fast = engine.on_host(2.0)
    for name in CPU_FIELDS:
        assert getattr(fast, name) == pytest.approx(getattr(engine, name) / 2, rel=1e-12), name
    assert fast.prefill_pair_bytes == engine.prefill_pair_bytes
    a100, h100 = HardwareCatalog().get("a100-80g"), HardwareCatalog().get("h100-sxm")
    ratio = engine.gpu_work_s(a100, 80, 4096) / engine.gpu_work_s(h100, 80, 4096)
    rate = (h100.hbm_bandwidth * h100.efficiency.hbm) / (a100.hbm_bandwidth * a100.efficiency.hbm)
    assert ratio == pytest.approx(rate, rel=1e-12)
    assert engine.gpu_work_s(a100, 80, 8192) == pytest.approx(4 * engine.gpu_work_s(a100, 80, 4096))
    sm = StepModel(h100, ModelCatalog().get("llama-2-70b"), 8, engine=engine)
    assert sm.engine.per_kernel_launch_s == pytest.approx(40e-6 / h100.host_cpu_speed)


def test_a_batch_beyond_the_pass_limit_runs_as_several_passes() -> None:
    """Prompts are spread over the fewest passes of at most max_batched_tokens; tokens, sequences
    and causal pairs add up; one long prompt stays one pass."""
    engine = EngineSpec(name="t", max_batched_tokens=8192)
    shape = BatchShape.prefill(24, 512)
    passes = engine.passes(shape)
    assert len(passes) == 2
    assert [p.prefill_seqs for p in passes] == [12, 12]
    assert sum(p.prefill_tokens for p in passes) == shape.prefill_tokens
    assert sum(p.prefill_attn_pairs for p in passes) == pytest.approx(shape.prefill_attn_pairs)
    assert all(p.prefill_tokens <= 8192 for p in passes)
    assert engine.passes(BatchShape.prefill(1, 20000)) == [BatchShape.prefill(1, 20000)]
    assert EngineSpec(name="t").passes(shape) == [shape]
    sm = StepModel(HardwareCatalog().get("a100-80g"), ModelCatalog().get("llama-2-70b"), 8, engine=engine)
    assert sm.time(shape) == pytest.approx(sum(sm.time(p) for p in passes), rel=1e-12)
