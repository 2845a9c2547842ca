"""Entry points on a :class:`~llmtwin.physics.step.StepModel`: plan a step, compare it with the baselines."""

from __future__ import annotations

from dataclasses import dataclass, replace

from llmtwin.physics.graph import BatchShape, build_graph
from llmtwin.physics.step import StepModel
from llmtwin.preserve.baselines import fused_timeline
from llmtwin.preserve.config import FusedConfig, PreserveConfig, WorkingSetConfig
from llmtwin.preserve.costs import OpCosts
from llmtwin.preserve.plan import PrefetchPlan
from llmtwin.preserve.planner import plan_prefetch
from llmtwin.preserve.timeline import Timeline, simulate


def step_costs(
    step_model: StepModel,
    shape: BatchShape,
    l2_capacity: float | None = None,
    working_set: WorkingSetConfig | None = None,
) -> OpCosts:
    """Op costs of one step; ``l2_capacity`` (bytes) defaults to the hardware's L2."""
    cap = step_model.hw.l2_capacity if l2_capacity is None else l2_capacity
    return OpCosts(step_model.hw, step_model.prec, step_model.tp, step_model.ops(shape), cap, working_set)


def plan_step(
    step_model: StepModel,
    shape: BatchShape,
    config: PreserveConfig | None = None,
    l2_capacity: float | None = None,
) -> PrefetchPlan:
    """The PRESERVE plan for one iteration of ``shape`` (per allreduce: tensors, bytes, order)."""
    return plan_prefetch(step_costs(step_model, shape, l2_capacity), config or PreserveConfig())


def plan_step_l2(
    step_model: StepModel,
    shape: BatchShape,
    config: PreserveConfig | None = None,
    l2_capacity: float | None = None,
) -> dict[int, float]:
    """Op index (in ``step_model.ops(shape)``) -> bytes of its weights/KV read from L2 under
    PRESERVE; pass it to ``StepModel.timeline(shape, l2_bytes=...)``. Deterministic.

    Computed on a few-layer model whose steady-state middle layer stands for every middle layer
    (equal to ``plan_step(...).l2_bytes()``, which plans all layers; tests check both agree).
    """
    cfg = config or PreserveConfig()
    layers = step_model.model.layers
    short, middle = _short_model(layers, cfg)
    ops = build_graph(replace(step_model.model, layers=short), step_model.tp, shape, step_model.prec)
    cap = step_model.hw.l2_capacity if l2_capacity is None else l2_capacity
    hits = plan_prefetch(OpCosts(step_model.hw, step_model.prec, step_model.tp, ops, cap), cfg).l2_bytes()
    if short == layers:
        return hits
    per_layer = sum(1 for op in ops if op.layer == 0)
    extra = (layers - short) * per_layer
    out: dict[int, float] = {}
    for i, nbytes in hits.items():
        layer = ops[i].layer
        if layer < middle:
            out[i] = nbytes
        elif layer > middle:
            out[i + extra] = nbytes
        else:
            for k in range(layers - short + 1):
                out[i + k * per_layer] = nbytes
    return out


def _short_model(layers: int, config: PreserveConfig) -> tuple[int, int]:
    """Layers of the stand-in model (enough for a window's reach on both sides) and its middle one."""
    short = min(layers, 2 * config.horizon_windows + 3)
    return short, short // 2


@dataclass(frozen=True, slots=True)
class StepComparison:
    """One step under the three schemes."""

    costs: OpCosts
    plan: PrefetchPlan
    vanilla: Timeline
    fused: Timeline
    preserve: Timeline

    @property
    def vanilla_step_s(self) -> float:
        return self.vanilla.step_s

    @property
    def fused_step_s(self) -> float:
        return self.fused.step_s

    @property
    def preserve_step_s(self) -> float:
        return self.preserve.step_s

    @property
    def speedup(self) -> float:
        """Vanilla step time over PRESERVE step time (1.0 for an empty step)."""
        return self.vanilla_step_s / self.preserve_step_s if self.preserve_step_s > 0 else 1.0

    @property
    def fused_speedup(self) -> float:
        return self.vanilla_step_s / self.fused_step_s if self.fused_step_s > 0 else 1.0


def compare_costs(
    costs: OpCosts, config: PreserveConfig | None = None, fused: FusedConfig | None = None
) -> StepComparison:
    cfg = config or PreserveConfig()
    plan = plan_prefetch(costs, cfg)
    empty = PrefetchPlan(costs.l2_capacity, ())
    return StepComparison(
        costs,
        plan,
        simulate(costs, empty, cfg),
        fused_timeline(costs, fused or FusedConfig()),
        simulate(costs, plan, cfg),
    )


def compare_step(
    step_model: StepModel,
    shape: BatchShape,
    config: PreserveConfig | None = None,
    fused: FusedConfig | None = None,
    l2_capacity: float | None = None,
) -> StepComparison:
    """Vanilla, fused GEMM+allreduce and PRESERVE timelines of one step."""
    return compare_costs(step_costs(step_model, shape, l2_capacity), config, fused)


@dataclass(frozen=True, slots=True)
class StepTimes:
    """Device seconds of one step under each scheme."""

    vanilla_s: float
    fused_s: float
    preserve_s: float

    @property
    def speedup(self) -> float:
        return self.vanilla_s / self.preserve_s if self.preserve_s > 0 else 1.0

    @property
    def fused_speedup(self) -> float:
        return self.vanilla_s / self.fused_s if self.fused_s > 0 else 1.0


def step_times(
    step_model: StepModel,
    shape: BatchShape,
    config: PreserveConfig | None = None,
    l2_capacity: float | None = None,
    working_set: WorkingSetConfig | None = None,
    fused: FusedConfig | None = None,
) -> StepTimes:
    """Vanilla, fused and PRESERVE device seconds of one step, in O(ops per layer), not O(ops).

    Layers are identical, so after the first few the timelines repeat: a model of
    ``2 * horizon_windows + 3`` layers is simulated and its steady-state middle layer is repeated
    for the missing ones (``tests/test_preserve_planner.py`` checks this against the full step).
    """
    cfg = config or PreserveConfig()
    layers = step_model.model.layers
    short, middle = _short_model(layers, cfg)
    ops = build_graph(replace(step_model.model, layers=short), step_model.tp, shape, step_model.prec)
    cap = step_model.hw.l2_capacity if l2_capacity is None else l2_capacity
    costs = OpCosts(step_model.hw, step_model.prec, step_model.tp, ops, cap, working_set)
    extra = layers - short
    timelines = (
        simulate(costs, PrefetchPlan(cap, ()), cfg),
        fused_timeline(costs, fused or FusedConfig()),
        simulate(costs, plan_prefetch(costs, cfg), cfg),
    )
    vanilla, fused_s, preserve = (t.step_s + extra * t.layer_span_s(middle) for t in timelines)
    return StepTimes(vanilla, fused_s, preserve)
