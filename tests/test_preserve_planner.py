"""PRESERVE planner invariants: bounds, never slower than vanilla, consumers read from L2."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
from preserve_builders import MIB, ascend, engine_profile, step_model

from llmtwin.errors import ConfigurationError
from llmtwin.physics.graph import BatchShape
from llmtwin.physics.roofline import class_bandwidth_fraction, memory_time
from llmtwin.preserve import (
    PreserveConfig,
    compare_step,
    plan_step,
    plan_step_l2,
    simulate,
    step_costs,
    step_times,
)
from llmtwin.preserve.plan import PrefetchPlan

DECODE = BatchShape.decode(8, 16384)

ENGINES = ["launch-10", "splitwise-dgx-a100"]
"""A partly launch-bound engine and the fitted DGX-A100 profile (fully launch-bound for the tiny model)."""

CONFIGS = [
    PreserveConfig(),
    PreserveConfig(contention="shared"),
    PreserveConfig(streaming_allocates=True),
    PreserveConfig(streaming_allocates=True, contention="shared", horizon_windows=2),
    PreserveConfig(priority="kv_first", partial=False),
    PreserveConfig(priority="weights_first", extend_window=False),
    PreserveConfig(budget_bytes=8 * MIB, prefetch_op_overhead_s=10e-6),
    PreserveConfig(horizon_windows=3, prefetch_bandwidth_fraction=0.5),
]


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("l2_mib", [0.0, 4.0, 32.0, 192.0])
@pytest.mark.parametrize("shape", [DECODE, BatchShape.decode(1, 512), BatchShape.prefill(1, 1024)])
def test_preserve_is_never_slower_than_vanilla(
    config: PreserveConfig, l2_mib: float, shape: BatchShape
) -> None:
    """Across planner choices, L2 sizes and batch shapes, the PRESERVE step never exceeds the serial one."""
    cmp = compare_step(step_model(), shape, config, l2_capacity=l2_mib * MIB)
    assert cmp.preserve_step_s <= cmp.vanilla_step_s * (1 + 1e-12)


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("l2_mib", [2.0, 24.0, 192.0])
def test_window_bytes_are_bounded_by_l2_hbm_window_and_budget(config: PreserveConfig, l2_mib: float) -> None:
    """Each window prefetches no more than the L2 left free, what HBM can move in the window, and the budget."""
    sm = step_model()
    plan = plan_step(sm, DECODE, config, l2_mib * MIB)
    peak = sm.hw.hbm_bandwidth
    stream = step_costs(sm, DECODE, l2_mib * MIB).hbm_rate * config.prefetch_bandwidth_fraction
    for w in plan.windows:
        assert w.prefetched_bytes <= w.l2_free_bytes + 1e-6
        assert w.l2_free_bytes <= l2_mib * MIB - w.live_bytes + 1e-6
        assert w.prefetched_bytes <= w.window_bytes + 1e-6
        assert w.prefetched_bytes <= peak * w.window_s + 1e-6
        assert w.prefetched_bytes <= stream * w.window_s + 1e-6
        if config.budget_bytes is not None:
            assert w.prefetched_bytes <= config.budget_bytes + 1e-6
        for it in w.items:
            assert 0.0 <= it.start_s <= it.end_s <= w.window_s + 1e-12
            assert it.offset_bytes + it.bytes <= it.tensor_bytes + 1e-6


@pytest.mark.parametrize("config", CONFIGS)
def test_unconsumed_prefetches_never_exceed_l2(config: PreserveConfig) -> None:
    """At every allreduce, the prefetched bytes whose consumer has not yet run fit in L2."""
    l2 = 24 * MIB
    plan = plan_step(step_model(), DECODE, config, l2)
    issued = [(w.allreduce, it) for w in plan.windows for it in w.items]
    for w in plan.windows:
        resident = sum(it.bytes for a, it in issued if a <= w.allreduce < it.consumer)
        assert resident <= l2 + 1e-6


def test_default_plan_prefetches_and_consumers_read_it_from_l2() -> None:
    """With the 910B2's L2 every allreduce prefetches, and each consumer reads its bytes from L2, faster."""
    sm = step_model()
    cmp = compare_step(sm, DECODE)
    assert all(w.items for w in cmp.plan.windows)
    planned = cmp.plan.l2_bytes()
    assert cmp.preserve.l2_hits() == pytest.approx(planned)
    assert cmp.preserve.wait_s == 0.0
    for j, nbytes in planned.items():
        assert nbytes <= cmp.costs.ops[j].prefetchable_bytes + 1e-6
        assert cmp.preserve.ops[j].duration_s < cmp.vanilla.ops[j].duration_s
    assert cmp.preserve_step_s < cmp.vanilla_step_s


def test_plan_step_l2_matches_the_physics_timeline() -> None:
    """Feeding plan_step_l2 to StepModel.timeline gives the PRESERVE consumers' op times."""
    sm = step_model()
    hits = plan_step_l2(sm, DECODE)
    assert hits == plan_step_l2(sm, DECODE)  # deterministic
    ops = sm.timeline(DECODE, l2_bytes=hits)
    cmp = compare_step(sm, DECODE)
    for j in hits:
        assert ops[j].l2_bytes == pytest.approx(hits[j])
        assert ops[j].time_s == pytest.approx(cmp.preserve.ops[j].duration_s)


def test_zero_l2_gives_the_vanilla_step() -> None:
    """Without L2 nothing can be prefetched and PRESERVE equals vanilla."""
    cmp = compare_step(step_model(), DECODE, l2_capacity=0.0)
    assert cmp.plan.prefetched_bytes == 0.0
    assert cmp.preserve_step_s == pytest.approx(cmp.vanilla_step_s)


def test_tp1_has_no_allreduce_and_no_gain() -> None:
    """A single device has no allreduce, so there is no window and no speedup (fused neither)."""
    cmp = compare_step(step_model(tp=1, layers=2), DECODE)
    assert cmp.plan.windows == ()
    assert cmp.speedup == 1.0
    assert cmp.fused_step_s == cmp.vanilla_step_s


def test_gain_grows_with_l2_and_saturates() -> None:
    """The speedup never falls as L2 grows, and stops growing once L2 exceeds what a window can move."""
    sm = step_model()
    speedups = [compare_step(sm, DECODE, l2_capacity=mib * MIB).speedup for mib in (0, 4, 16, 64, 256, 1024)]
    assert all(b >= a - 1e-12 for a, b in itertools.pairwise(speedups))
    assert speedups[2] > speedups[0]
    assert speedups[-1] == pytest.approx(speedups[-2])


def test_cross_layer_window_prefetches_next_layer_qkv_and_kv() -> None:
    """The allreduce after layer L's MLP prefetches layer L+1's QKV weights and KV cache."""
    plan = plan_step(step_model(), DECODE)
    mlp_windows = [w for w in plan.windows if w.allreduce_name == "mlp_allreduce" and w.layer == 0]
    assert mlp_windows
    tensors = [it.tensor for it in mlp_windows[0].items]
    assert tensors[:2] == ["L1.qkv", "L1.kv"]


def test_priority_kv_first_puts_kv_first() -> None:
    """kv_first issues the KV cache before the QKV weights in the cross-layer window."""
    plan = plan_step(step_model(), DECODE, PreserveConfig(priority="kv_first"))
    w = next(w for w in plan.windows if w.allreduce_name == "mlp_allreduce")
    assert w.items[0].kind == "kv"


def test_whole_tensors_only_without_partial() -> None:
    """With partial prefetch off every prefetch is a whole tensor."""
    plan = plan_step(step_model(), DECODE, PreserveConfig(partial=False))
    assert plan.items
    assert all(it.offset_bytes == 0 and it.bytes == pytest.approx(it.tensor_bytes) for it in plan.items)


def test_window_extension_covers_following_elementwise_ops() -> None:
    """Extending the window over the add and norm ops lengthens it and lets it move more bytes."""
    sm = step_model()
    ext = plan_step(sm, DECODE, PreserveConfig(extend_window=True))
    short = plan_step(sm, DECODE, PreserveConfig(extend_window=False))
    assert all(len(w.window_ops) == 1 for w in short.windows)
    assert all(len(w.window_ops) > 1 for w in ext.windows)
    assert ext.windows[1].window_bytes > short.windows[1].window_bytes


@pytest.mark.parametrize(
    ("config", "longer"), [(PreserveConfig(contention="shared"), True), (PreserveConfig(), False)]
)
def test_shared_contention_stretches_the_allreduce(config: PreserveConfig, longer: bool) -> None:
    """Under shared HBM the allreduce lasts longer while prefetching; under idle_only it does not."""
    cmp = compare_step(step_model(), DECODE, config)
    j = cmp.plan.windows[0].allreduce
    grew = cmp.preserve.ops[j].duration_s > cmp.vanilla.ops[j].duration_s * (1 + 1e-9)
    assert grew == longer


def test_lru_l2_plan_survives_until_consumers() -> None:
    """With streaming reads allocating in an LRU L2, the planner books only bytes that survive to their consumer."""
    cmp = compare_step(step_model(), DECODE, PreserveConfig(streaming_allocates=True), l2_capacity=24 * MIB)
    assert cmp.plan.prefetched_bytes > 0
    for span in cmp.preserve.prefetches:
        assert span.hit_bytes == pytest.approx(span.bytes)


def test_lru_eviction_loses_prefetched_bytes_in_the_timeline() -> None:
    """A plan made for a bypassing L2, run on an LRU L2 far too small for the traffic, loses bytes to eviction."""
    sm = step_model()
    costs = step_costs(sm, DECODE, 24 * MIB)
    plan = plan_step(sm, DECODE, PreserveConfig(horizon_windows=2), 24 * MIB)
    assert plan.prefetched_bytes > 0
    lru = PreserveConfig(horizon_windows=2, streaming_allocates=True)
    tl = simulate(costs, plan, lru)
    assert sum(p.hit_bytes for p in tl.prefetches) < plan.prefetched_bytes


def test_overcommitted_plan_makes_the_consumer_wait() -> None:
    """A prefetch larger than its window delays its consumer until the side stream finishes."""
    sm = step_model()
    shape = BatchShape.decode(32, 16384)  # 268 MB of KV per layer: far more than one window moves
    costs = step_costs(sm, shape)
    plan = plan_step(sm, shape)
    w = next(w for w in plan.windows if any(it.kind == "kv" for it in w.items))
    item = next(it for it in w.items if it.kind == "kv")
    assert item.tensor_bytes > w.window_bytes
    whole = replace(item, order=0, offset_bytes=0.0, bytes=item.tensor_bytes)
    tl = simulate(costs, PrefetchPlan(plan.l2_capacity, (replace(w, items=(whole,)),)), PreserveConfig())
    consumer = tl.ops[item.consumer]
    assert consumer.wait_s > 0
    assert tl.prefetches[0].end_s == pytest.approx(consumer.start_s)


def test_compute_bound_consumers_get_nothing() -> None:
    """In a long prefill the GEMMs are compute-bound, so every prefetch the planner books still saves time."""
    plan = plan_step(step_model(), BatchShape.prefill(4, 4096))
    assert all(it.saving_s > 0 for it in plan.items)
    gemm_items = [it for it in plan.items if it.kind == "weight"]
    assert not gemm_items


def test_bad_config_is_a_twin_error() -> None:
    """Invalid planner parameters raise ConfigurationError."""
    with pytest.raises(ConfigurationError):
        PreserveConfig(priority="random")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        PreserveConfig(horizon_windows=0)
    with pytest.raises(ConfigurationError):
        PreserveConfig(budget_bytes=-1.0)


def test_hardware_l2_is_the_default_capacity() -> None:
    """Without an explicit capacity the planner uses the hardware file's L2."""
    sm = step_model(hw=ascend(l2_mib=8))
    assert plan_step(sm, DECODE).l2_capacity == 8 * MIB


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("l2_mib", [8.0, 192.0])
def test_fast_step_times_match_the_full_timeline(config: PreserveConfig, l2_mib: float) -> None:
    """step_times (a few layers, steady state repeated) equals simulating every layer."""
    sm = step_model(layers=12)
    cmp = compare_step(sm, DECODE, config, l2_capacity=l2_mib * MIB)
    times = step_times(sm, DECODE, config, l2_mib * MIB)
    assert times.vanilla_s == pytest.approx(cmp.vanilla_step_s, rel=1e-9)
    assert times.fused_s == pytest.approx(cmp.fused_step_s, rel=1e-9)
    assert times.preserve_s == pytest.approx(cmp.preserve_step_s, rel=1e-9)


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("l2_mib", [8.0, 192.0])
def test_fast_plan_step_l2_matches_the_full_plan(config: PreserveConfig, l2_mib: float) -> None:
    """plan_step_l2 (steady-state layer repeated) equals the plan over every layer."""
    sm = step_model(layers=12)
    fast = plan_step_l2(sm, DECODE, config, l2_mib * MIB)
    full = plan_step(sm, DECODE, config, l2_mib * MIB).l2_bytes()
    assert fast.keys() == full.keys()
    for j, nbytes in full.items():
        assert fast[j] == pytest.approx(nbytes, rel=1e-9)


def test_prefetch_streams_at_the_device_models_hbm_rate() -> None:
    """The side stream moves a byte from HBM in the time the device model's streaming GEMM reads it."""
    sm = step_model()
    costs = step_costs(sm, DECODE)
    nbytes = 64 * MIB
    gemm_read_s = memory_time(sm.hw, nbytes, 0.0, class_bandwidth_fraction(sm.hw.efficiency, "stream"))
    assert nbytes / costs.hbm_rate == pytest.approx(gemm_read_s, rel=1e-12)
    assert costs.hbm_rate < sm.hw.hbm_bandwidth * sm.hw.efficiency.hbm  # stream_realised < 1 on this device


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("shape", [DECODE, BatchShape.decode(1, 512), BatchShape.prefill(1, 1024)])
def test_planned_step_equals_step_model_time(engine: str, shape: BatchShape) -> None:
    """With an engine, PRESERVE's step is StepModel.time(shape, plan) and vanilla is StepModel.time(shape)."""
    sm = step_model(engine=engine_profile(engine))
    cmp = compare_step(sm, shape)
    assert cmp.vanilla_step_s == pytest.approx(sm.time(shape), rel=1e-12)
    assert cmp.preserve_step_s == pytest.approx(sm.time(shape, plan_step_l2(sm, shape)), rel=1e-12)
    assert cmp.preserve.step_s == pytest.approx(
        sum(t.time_s for t in sm.timeline(shape, cmp.plan.l2_bytes()))
    )


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("shape", [DECODE, BatchShape.decode(1, 512)])
def test_preserve_is_never_slower_than_vanilla_with_an_engine(
    engine: str, config: PreserveConfig, shape: BatchShape
) -> None:
    """With the engine's dispatch queue and serial overhead, the PRESERVE step never exceeds the serial one."""
    cmp = compare_step(step_model(engine=engine_profile(engine)), shape, config, l2_capacity=24 * MIB)
    assert cmp.preserve_step_s <= cmp.vanilla_step_s * (1 + 1e-12)
    assert cmp.fused_step_s <= cmp.vanilla_step_s * (1 + 1e-12)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("config", CONFIGS)
def test_fast_step_times_match_the_full_timeline_with_an_engine(engine: str, config: PreserveConfig) -> None:
    """step_times repeats the steady-state layer inside the engine's dispatch queue exactly."""
    sm = step_model(layers=12, engine=engine_profile(engine))
    cmp = compare_step(sm, DECODE, config)
    times = step_times(sm, DECODE, config)
    assert times.vanilla_s == pytest.approx(cmp.vanilla_step_s, rel=1e-9)
    assert times.fused_s == pytest.approx(cmp.fused_step_s, rel=1e-9)
    assert times.preserve_s == pytest.approx(cmp.preserve_step_s, rel=1e-9)
    assert plan_step_l2(sm, DECODE, config).keys() == plan_step(sm, DECODE, config).l2_bytes().keys()
