"""PRESERVE (arXiv 2501.08192): prefetch weights and KV cache into L2 during allreduces.

The planner is pure and deterministic. Others call :func:`plan_step_l2` (op index -> bytes read
from L2), :func:`plan_step` (the full plan), :func:`compare_step` (vanilla, fused and PRESERVE
timelines) or, where only the step time matters, :func:`step_times` (fast: a few layers are
simulated and the steady-state layer repeated). Step times include the step model's engine
exactly as ``StepModel.time`` charges it (:mod:`llmtwin.preserve.engine_cost`). Every open
modelling choice is a field of :class:`PreserveConfig`; see docs/preserve.md.
"""

from llmtwin.preserve.config import FusedConfig, PreserveConfig, WorkingSetConfig
from llmtwin.preserve.engine_cost import EngineCost, engine_cost
from llmtwin.preserve.evaluate import (
    StepComparison,
    StepTimes,
    compare_costs,
    compare_step,
    plan_step,
    plan_step_l2,
    step_costs,
    step_times,
)
from llmtwin.preserve.op_costs import OpCosts
from llmtwin.preserve.plan import PrefetchItem, PrefetchPlan, PrefetchWindow
from llmtwin.preserve.planner import plan_prefetch
from llmtwin.preserve.timeline import OpSpan, PrefetchSpan, Timeline, simulate

__all__ = [
    "EngineCost",
    "FusedConfig",
    "OpCosts",
    "OpSpan",
    "PrefetchItem",
    "PrefetchPlan",
    "PrefetchSpan",
    "PrefetchWindow",
    "PreserveConfig",
    "StepComparison",
    "StepTimes",
    "Timeline",
    "WorkingSetConfig",
    "compare_costs",
    "compare_step",
    "engine_cost",
    "plan_prefetch",
    "plan_step",
    "plan_step_l2",
    "simulate",
    "step_costs",
    "step_times",
]
