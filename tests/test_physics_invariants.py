"""Physics invariants of the device cost model: roofline bounds, monotonicity, TP scaling."""

from __future__ import annotations

import itertools
import random

import pytest

from llmtwin.hardware import HardwareCatalog, HardwareSpec
from llmtwin.models import ModelCatalog
from llmtwin.physics.collectives import collective_time
from llmtwin.physics.graph import BatchShape, allreduce_ops
from llmtwin.physics.op_time import op_time
from llmtwin.physics.precision import Precision
from llmtwin.physics.roofline import smooth_max
from llmtwin.physics.step import StepModel

HARDWARE = ("a100-80g", "h100-sxm", "ascend-910b2")
SHAPES = (
    BatchShape.prefill(1, 1),
    BatchShape.prefill(1, 128),
    BatchShape.prefill(4, 2048),
    BatchShape.decode(1, 100),
    BatchShape.decode(64, 4000),
)


def step(hw: str, model: str, tp: int, prec: str = "bf16") -> StepModel:
    return StepModel(HardwareCatalog().get(hw), ModelCatalog().get(model), tp, Precision.parse(prec))


@pytest.mark.parametrize(
    ("hw_name", "shape", "prec"), list(itertools.product(HARDWARE, SHAPES, ("bf16", "int8")))
)
def test_no_op_beats_its_roofline_bounds(hw_name: str, shape: BatchShape, prec: str) -> None:
    """No op is faster than its HBM bytes at peak bandwidth or its FLOPs at peak compute."""
    sm = step(hw_name, "llama-3-8b", 2, prec)
    hw: HardwareSpec = sm.hw
    best_flops = max(hw.peak_flops.values())
    for op in sm.ops_one_layer(shape):
        t = op_time(hw, op, sm.prec, sm.tp)
        if op.kind == "collective":
            assert t > 0
            continue
        assert t >= op.hbm_bytes / hw.hbm_bandwidth, op.name
        assert t >= op.flops / best_flops, op.name


def test_l2_hits_never_beat_l2_bandwidth() -> None:
    """Serving a GEMM's weights from L2 speeds it up but not beyond the L2 peak bandwidth."""
    sm = step("a100-80g", "llama-2-7b", 1)
    gemm = next(op for op in sm.ops_one_layer(BatchShape.decode(1, 10)) if op.name == "mlp_up_proj")
    cold = op_time(sm.hw, gemm, sm.prec, 1)
    warm = op_time(sm.hw, gemm, sm.prec, 1, l2_bytes=gemm.prefetchable_bytes)
    assert warm < cold
    assert warm >= gemm.prefetchable_bytes / sm.hw.l2_bandwidth


def test_smooth_max_bounds() -> None:
    """The smooth maximum lies between max(a, b) and a + b for sharpness >= 1."""
    for a, b, p in [(1.0, 2.0, 1.0), (3.0, 0.5, 1.4), (2.0, 2.0, 8.0)]:
        s = smooth_max(a, b, p)
        assert max(a, b) - 1e-12 <= s <= a + b + 1e-12


@pytest.mark.parametrize("hw_name", HARDWARE)
def test_iteration_time_grows_with_prompt_tokens(hw_name: str) -> None:
    """Prefill time is strictly increasing in prompt length and in batch size."""
    sm = step(hw_name, "llama-2-7b", 1)
    by_prompt = [sm.time(BatchShape.prefill(1, p)) for p in (1, 16, 128, 512, 2048, 8192)]
    by_batch = [sm.time(BatchShape.prefill(b, 512)) for b in (1, 2, 4, 16)]
    assert by_prompt == sorted(by_prompt)
    assert len(set(by_prompt)) == len(by_prompt)
    assert by_batch == sorted(by_batch)
    assert len(set(by_batch)) == len(by_batch)


@pytest.mark.parametrize("hw_name", HARDWARE)
def test_decode_time_grows_with_batch_and_context(hw_name: str) -> None:
    """Decode time is strictly increasing in batch size and in context length."""
    sm = step(hw_name, "llama-3-70b", 4)
    by_batch = [sm.time(BatchShape.decode(b, 1024)) for b in (1, 8, 32, 128)]
    by_context = [sm.time(BatchShape.decode(16, c)) for c in (0, 512, 4096, 16384)]
    assert by_batch == sorted(by_batch)
    assert len(set(by_batch)) == len(by_batch)
    assert by_context == sorted(by_context)
    assert len(set(by_context)) == len(by_context)


def test_prefill_attention_grows_quadratically() -> None:
    """Doubling a long prompt more than doubles its attention time (causal FLOPs ~ s^2)."""
    sm = step("a100-80g", "llama-2-7b", 1)

    def attention_s(prompt: int) -> float:
        ops = sm.ops_one_layer(BatchShape.prefill(1, prompt))
        return sum(op_time(sm.hw, op, sm.prec, 1) for op in ops if op.kind == "attention")

    assert attention_s(16384) > 3.0 * attention_s(8192)


@pytest.mark.parametrize(
    ("model", "shape"),
    [("llama-3-70b", BatchShape.prefill(1, 4096)), ("llama-3-70b", BatchShape.decode(32, 2048))],
)
def test_tensor_parallel_scaling_is_sane(model: str, shape: BatchShape) -> None:
    """Doubling TP lowers device time, but never by more than 2x (sharding plus allreduce)."""
    times = [step("h100-sxm", model, tp).device_time(shape) for tp in (2, 4, 8)]
    for slower, faster in itertools.pairwise(times):
        assert slower / 2.0 < faster < slower


def test_weights_per_device_shrink_with_tp() -> None:
    """Weight bytes per device scale as 1/TP and KV capacity grows with TP."""
    sms = [step("a100-80g", "llama-2-70b", tp) for tp in (2, 4, 8)]
    w = [s.weight_bytes_per_device() for s in sms]
    assert w[0] == pytest.approx(2 * w[1])
    assert w[1] == pytest.approx(2 * w[2])
    caps = [s.kv_capacity_tokens() for s in sms]
    assert caps == sorted(caps)


@pytest.mark.parametrize("op", ["all_reduce", "all_gather", "send_recv"])
def test_collectives_are_monotone_and_bounded(op: str) -> None:
    """Collective time grows with message size, is zero for one device, and never beats the link."""
    hw = HardwareCatalog().get("a100-80g")
    sizes = [2**k for k in range(10, 28, 2)]
    times = [collective_time(hw, op, 8, s) for s in sizes]  # type: ignore[arg-type]
    assert times == sorted(times)
    assert collective_time(hw, op, 1, 1e6) == 0.0  # type: ignore[arg-type]
    for s, t in zip(sizes, times, strict=True):
        assert t >= s * (1 if op == "send_recv" else 7 / 8) / hw.link.bandwidth_per_direction


def test_crossing_nodes_is_slower_than_staying_inside() -> None:
    """An allreduce over 16 devices (two nodes) is slower than one over 8 (one NVSwitch node)."""
    hw = HardwareCatalog().get("a100-80g")
    assert collective_time(hw, "all_reduce", 16, 64e6) > 2 * collective_time(hw, "all_reduce", 8, 64e6)


def test_narrower_weights_speed_up_memory_bound_decode() -> None:
    """int8 weights make a small-batch decode faster than bf16 (half the bytes to stream)."""
    bf16 = step("a100-80g", "llama-2-7b", 1, "bf16").device_time(BatchShape.decode(1, 512))
    int8 = step("a100-80g", "llama-2-7b", 1, "weights=int8,activations=bf16,kv=bf16").device_time(
        BatchShape.decode(1, 512)
    )
    assert 0.5 * bf16 < int8 < 0.75 * bf16


@pytest.mark.parametrize(
    ("hw_name", "model", "tp"),
    [("h100-sxm", "llama-3-70b", 8), ("a100-80g", "mixtral-8x7b", 2), ("mi300x", "mistral-7b", 1)],
)
def test_stage_times_equal_costing_the_whole_graph(hw_name: str, model: str, tp: int) -> None:
    """``stage_times`` keeps every op's time but attention's per row count: for shapes that share
    rows but not attention (prefill, decode, both; MoE, sliding window) it gives exactly the
    times, in the order, of costing every op of the graph."""
    sm = StepModel(HardwareCatalog().get(hw_name), ModelCatalog().get(model), tp, check_fit=False)
    rng = random.Random(7)
    for _ in range(200):
        prefill = rng.choice((0, rng.randint(1, 64), rng.randint(1, 4096)))
        seqs = rng.randint(1, 4) if prefill else 0
        decode = rng.randint(0, 48) if prefill else rng.randint(1, 48)
        for _ in range(
            2
        ):  # the same rows twice, with other attention: the second is served from the kept times
            shape = BatchShape(
                prefill_tokens=prefill,
                prefill_seqs=seqs,
                prefill_attn_pairs=float(rng.randint(prefill, prefill * prefill)) if prefill else 0.0,
                prefill_context_tokens=rng.randint(0, 16000) if prefill else 0,
                decode_seqs=decode,
                decode_context_tokens=decode * rng.randint(1, 9000),
            )
            whole: tuple[list[float], list[float], list[float]] = ([], [], [])
            for op in sm.ops_one_layer(shape):
                stage = 0 if op.layer < 0 else 1 if op.layer == 0 else 2
                whole[stage].append(op_time(sm.hw, op, sm.prec, sm.tp))
            assert sm.stage_times(shape) == whole, shape


@pytest.mark.parametrize(("model", "tp"), [("llama-3-70b", 8), ("mixtral-8x7b", 2), ("mistral-7b", 1)])
def test_allreduce_ops_are_the_graphs(model: str, tp: int) -> None:
    """``allreduce_ops`` (what the fleet metrics cost per token count) are exactly the allreduce
    ops of a layer of the whole graph, whatever the rest of the shape; none at TP 1."""
    sm = StepModel(HardwareCatalog().get("h100-sxm"), ModelCatalog().get(model), tp, check_fit=False)
    rng = random.Random(11)
    for _ in range(100):
        prefill, decode = rng.choice((0, rng.randint(1, 4096))), rng.randint(0, 64)
        shape = BatchShape(
            prefill_tokens=prefill,
            prefill_seqs=1 if prefill else 0,
            prefill_attn_pairs=float(prefill * prefill),
            decode_seqs=decode,
            decode_context_tokens=decode * rng.randint(1, 9000),
        )
        if shape.tokens == 0:
            continue
        ours = allreduce_ops(sm.model, tp, shape.tokens, sm.prec)
        assert ours == [op for op in sm.ops_one_layer(shape) if op.collective == "all_reduce"]
        assert len(ours) == (2 if tp > 1 else 0)


@pytest.mark.parametrize(
    ("hw_name", "model", "tp"), [("ascend-910b2", "llama-3-70b", 4), ("a100-80g", "mixtral-8x7b", 2)]
)
def test_op_times_under_a_plan_equal_the_timeline(hw_name: str, model: str, tp: int) -> None:
    """``op_times`` prices every layer from one layer's ops (they differ only in their names):
    with any plan (L2 bytes by op index, some beyond what an op can take) it gives exactly the
    timeline's times."""
    sm = StepModel(HardwareCatalog().get(hw_name), ModelCatalog().get(model), tp, check_fit=False)
    rng = random.Random(11)
    for shape in (*SHAPES, BatchShape(2048, 2, 1.5e6, 3000, 16, 64000)):
        n = len(sm.ops(shape))
        for _ in range(5):
            plan = {
                i: rng.choice((0.0, rng.uniform(0.0, 4e8), 1e13))
                for i in rng.sample(range(n), rng.randint(1, n))
            }
            assert sm.op_times(shape, plan) == [t.time_s for t in sm.timeline(shape, plan)], shape
