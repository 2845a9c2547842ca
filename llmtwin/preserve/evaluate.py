"""Entry points on a :class:`~llmtwin.physics.step.StepModel`: plan a step, compare it with the baselines."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from llmtwin.physics.graph import BatchShape, build_graph
from llmtwin.physics.step import StepModel
from llmtwin.preserve.baselines import fused_timeline
from llmtwin.preserve.config import FusedConfig, PreserveConfig, WorkingSetConfig
from llmtwin.preserve.engine_cost import EngineCost, engine_cost
from llmtwin.preserve.op_costs import OpCosts
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
    costs = step_costs(step_model, shape, l2_capacity)
    return plan_prefetch(costs, config or PreserveConfig(), engine_cost(step_model, shape))


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
    costs = OpCosts(step_model.hw, step_model.prec, step_model.tp, ops, cap)
    hits = plan_prefetch(costs, cfg, engine_cost(step_model, shape)).l2_bytes()
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
    """One step under the three schemes. The timelines are device work; the ``*_step_s``
    figures add the engine (its dispatch queue over the main-stream ops and its serial overhead,
    :mod:`llmtwin.preserve.engine_cost`), as ``StepModel.time`` does."""

    costs: OpCosts
    plan: PrefetchPlan
    vanilla: Timeline
    fused: Timeline
    preserve: Timeline
    engine: EngineCost = field(default_factory=EngineCost)

    @property
    def vanilla_step_s(self) -> float:
        """Seconds of the serial iteration, engine included."""
        return self.engine.iteration_s(self.vanilla.gpu_times())

    @property
    def fused_step_s(self) -> float:
        return self.engine.iteration_s(self.fused.gpu_times())

    @property
    def preserve_step_s(self) -> float:
        return self.engine.iteration_s(self.preserve.gpu_times())

    @property
    def speedup(self) -> float:
        """Vanilla step time over PRESERVE step time (1.0 for an empty step)."""
        return self.vanilla_step_s / self.preserve_step_s if self.preserve_step_s > 0 else 1.0

    @property
    def fused_speedup(self) -> float:
        return self.vanilla_step_s / self.fused_step_s if self.fused_step_s > 0 else 1.0


def compare_costs(
    costs: OpCosts,
    config: PreserveConfig | None = None,
    fused: FusedConfig | None = None,
    engine: EngineCost | None = None,
) -> StepComparison:
    """The three schemes on ``costs``; ``engine`` (default: none) prices the iteration around them."""
    cfg = config or PreserveConfig()
    eng = engine or EngineCost()
    plan = plan_prefetch(costs, cfg, eng)
    empty = PrefetchPlan(costs.l2_capacity, ())
    return StepComparison(
        costs,
        plan,
        simulate(costs, empty, cfg),
        fused_timeline(costs, fused or FusedConfig()),
        simulate(costs, plan, cfg),
        eng,
    )


def compare_step(
    step_model: StepModel,
    shape: BatchShape,
    config: PreserveConfig | None = None,
    fused: FusedConfig | None = None,
    l2_capacity: float | None = None,
) -> StepComparison:
    """Vanilla, fused GEMM+allreduce and PRESERVE timelines of one step, with ``step_model``'s engine."""
    costs = step_costs(step_model, shape, l2_capacity)
    return compare_costs(costs, config, fused, engine_cost(step_model, shape))


@dataclass(frozen=True, slots=True)
class StepTimes:
    """Seconds of one iteration under each scheme, the step model's engine included."""

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
    """Vanilla, fused and PRESERVE seconds of one iteration (``step_model``'s engine included),
    in O(ops per layer), not O(ops).

    Layers are identical, so after the first few the timelines repeat: a model of
    ``2 * horizon_windows + 3`` layers is simulated and its steady-state middle layer is repeated
    for the missing ones, also in the engine's dispatch queue (``tests/test_preserve_planner.py``
    checks this against the full step).
    """
    cfg = config or PreserveConfig()
    layers = step_model.model.layers
    short, middle = _short_model(layers, cfg)
    ops = build_graph(replace(step_model.model, layers=short), step_model.tp, shape, step_model.prec)
    cap = step_model.hw.l2_capacity if l2_capacity is None else l2_capacity
    costs = OpCosts(step_model.hw, step_model.prec, step_model.tp, ops, cap, working_set)
    engine = engine_cost(step_model, shape)
    timelines = (
        simulate(costs, PrefetchPlan(cap, ()), cfg),
        fused_timeline(costs, fused or FusedConfig()),
        simulate(costs, plan_prefetch(costs, cfg, engine), cfg),
    )
    repeats = layers - short + 1
    vanilla, fused_s, preserve = (
        engine.iteration_s(
            t.gpu_times(range(-1, middle)),
            t.gpu_times(range(middle, middle + 1)),
            repeats,
            t.gpu_times(range(middle + 1, short + 1)),
        )
        for t in timelines
    )
    return StepTimes(vanilla, fused_s, preserve)
