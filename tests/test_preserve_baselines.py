"""Baselines: the serial step and fused GEMM+allreduce."""

from __future__ import annotations

import pytest
from preserve_builders import step_model

from llmtwin.physics.collectives import collective_time
from llmtwin.physics.graph import BatchShape
from llmtwin.preserve import FusedConfig, compare_step, step_costs
from llmtwin.preserve.baselines import fused_pairs, fused_time

DECODE = BatchShape.decode(8, 16384)


def test_vanilla_is_the_sum_of_the_physics_op_times() -> None:
    """The vanilla step is StepModel.timeline's op times back to back."""
    sm = step_model()
    cmp = compare_step(sm, DECODE)
    assert cmp.vanilla_step_s == pytest.approx(sum(t.time_s for t in sm.timeline(DECODE)))
    assert cmp.vanilla_step_s == pytest.approx(sm.device_time(DECODE))


@pytest.mark.parametrize("shape", [DECODE, BatchShape.decode(1, 256), BatchShape.prefill(2, 2048)])
@pytest.mark.parametrize("hides_alpha", [True, False])
def test_fused_lies_between_vanilla_and_ideal(shape: BatchShape, hides_alpha: bool) -> None:
    """Fused is never slower than vanilla and hides at most min(GEMM, allreduce) per pair."""
    sm = step_model()
    cmp = compare_step(sm, shape, fused=FusedConfig(hides_alpha=hides_alpha))
    costs = cmp.costs
    pairs = fused_pairs(costs, FusedConfig(hides_alpha=hides_alpha))
    assert len(pairs) == 2 * sm.model.layers
    ideal = cmp.vanilla_step_s - sum(
        min(costs.vanilla_time(p.gemm), costs.vanilla_time(p.allreduce)) for p in pairs
    )
    assert ideal - 1e-12 <= cmp.fused_step_s <= cmp.vanilla_step_s + 1e-12


def test_one_chunk_with_exposed_alpha_is_the_serial_pair() -> None:
    """Fusing into one chunk with the allreduce latency after the GEMM changes nothing."""
    costs = step_costs(step_model(), DECODE)
    p = fused_pairs(costs, FusedConfig())[0]
    serial = costs.vanilla_time(p.gemm) + costs.vanilla_time(p.allreduce)
    assert fused_time(costs, p.gemm, p.allreduce, 1, hides_alpha=False) == pytest.approx(serial)


def test_last_chunk_of_the_allreduce_stays_exposed() -> None:
    """Fusing cannot hide the last chunk's allreduce: its non-alpha time follows the GEMM."""
    sm = step_model()
    costs = step_costs(sm, DECODE)
    for p in fused_pairs(costs, FusedConfig()):
        msg = costs.ops[p.allreduce].message_bytes / p.chunks
        last = collective_time(sm.hw, "all_reduce", sm.tp, msg) - sm.hw.efficiency.allreduce_alpha_s
        assert p.fused_s >= costs.vanilla_time(p.gemm) + last - 1e-15
        assert p.fused_s < p.serial_s


def test_chunking_pays_the_per_chunk_latency() -> None:
    """A latency-bound decode allreduce split in 8 costs more link time than in 1."""
    costs = step_costs(step_model(), BatchShape.decode(1, 256))
    p = fused_pairs(costs, FusedConfig())[0]
    one = fused_time(costs, p.gemm, p.allreduce, 1, hides_alpha=True)
    eight = fused_time(costs, p.gemm, p.allreduce, 8, hides_alpha=True)
    assert eight > one


def test_fused_timeline_replaces_each_pair_by_one_span() -> None:
    """The fused timeline has one 'fused' span per GEMM+allreduce pair and ends at fused_step_s."""
    cmp = compare_step(step_model(), DECODE)
    fused = [s for s in cmp.fused.ops if s.kind == "fused"]
    assert len(fused) == 2 * 3
    assert cmp.fused.ops[-1].end_s == pytest.approx(cmp.fused_step_s)


def test_fused_kernel_pays_one_gemm_fixed_cost_before_its_first_chunk() -> None:
    """Where the links bind, fused = GEMM fixed cost + one chunk + n chunk allreduces (alpha once, exposed)."""
    sm = step_model()
    e = sm.hw.efficiency
    costs = step_costs(sm, BatchShape.decode(1, 256))
    p = fused_pairs(costs, FusedConfig())[0]
    gemm_s = costs.vanilla_time(p.gemm)
    for n in (2, 4, 8):
        chunk_ar = collective_time(sm.hw, "all_reduce", sm.tp, costs.ops[p.allreduce].message_bytes / n)
        chunk_gemm = (gemm_s - e.gemm_overhead_s) / n
        assert chunk_ar - e.allreduce_alpha_s >= chunk_gemm  # the links, not the GEMM chunks, bind
        expected = e.gemm_overhead_s + chunk_gemm + n * (chunk_ar - e.allreduce_alpha_s) + e.allreduce_alpha_s
        assert fused_time(costs, p.gemm, p.allreduce, n, hides_alpha=False) == pytest.approx(
            expected, rel=1e-12
        )


def test_allreduce_times_are_the_collective_model() -> None:
    """Each allreduce of the vanilla step takes collectives.collective_time, which pays alpha plus
    2 (tp - 1) link hops; a fused chunk keeps its hops, so n chunks pay at least n times the hops."""
    sm = step_model()
    cmp = compare_step(sm, DECODE)
    hops = 2 * (sm.tp - 1) * sm.hw.link.latency_s
    assert hops > 0
    for j, op in enumerate(cmp.costs.ops):
        if op.collective != "all_reduce":
            continue
        expected = collective_time(sm.hw, "all_reduce", sm.tp, op.message_bytes)
        assert cmp.vanilla.ops[j].duration_s == pytest.approx(expected, rel=1e-12)
        assert expected >= sm.hw.efficiency.allreduce_alpha_s + hops
    for p in fused_pairs(cmp.costs, FusedConfig()):
        for n in (1, 2, 4, 8):
            t = fused_time(cmp.costs, p.gemm, p.allreduce, n, hides_alpha=True)
            assert t >= sm.hw.efficiency.allreduce_alpha_s + n * hops - 1e-15
