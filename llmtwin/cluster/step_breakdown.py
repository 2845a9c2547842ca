"""How one instance's iterations break down: allreduce seconds, and what PRESERVE saved.

:class:`~llmtwin.cluster.observer.InstanceObserver` asks, per logged iteration shape, how many
of its seconds are tensor-parallel allreduce and, for a decode iteration run under a PRESERVE
plan, how much time the plan saved and how many bytes it prefetched. Each answer is worked out
once per shape from the step model and cached (allreduce seconds by the process's shared
:class:`~llmtwin.cluster.cost.IterationCost`): a run repeats few shapes many times.
"""

from __future__ import annotations

from collections.abc import Mapping

from llmtwin.cluster.cost import IterationCost
from llmtwin.physics.graph import BatchShape

PlanStats = Mapping[BatchShape, tuple[float, float]]
"""PRESERVE plans a device used, by step shape: (bytes read from L2 per step, largest one op's)."""


class StepBreakdown:
    """Per-shape breakdowns of one instance's iteration times (see the module docstring)."""

    def __init__(self, cost: IterationCost, plans: PlanStats | None) -> None:
        self.cost = cost
        self.step = cost.step
        self.plans = plans
        self.preserve_l2 = 0.0
        """L2 bytes of the largest one op's prefetch, under the latest plan found."""
        self._unplanned: dict[BatchShape, float] = {}
        self._shapes: dict[float, BatchShape] = {}

    def allreduce_s(self, tokens: int) -> float:
        """Seconds of tensor-parallel allreduce in one iteration of ``tokens`` tokens."""
        return self.cost.allreduce_s(tokens)

    def preserve(self, seqs: int, dt: float) -> tuple[float, float] | None:
        """(seconds saved, bytes prefetched) by PRESERVE in one decode iteration that took ``dt``;
        None without a plan for it."""
        if not self.plans:
            return None
        shape = self._shapes.get(dt)
        if shape is None:
            cost = self.cost
            for (n, lo), step_t in cost.decode_times().items():
                self._shapes[step_t] = BatchShape(decode_seqs=n, decode_context_tokens=cost.buckets.rep(lo))
            shape = self._shapes.get(dt)
        stats = self.plans.get(shape) if shape is not None and shape.decode_seqs == seqs else None
        if shape is None or stats is None:
            return None
        self.preserve_l2 = stats[1]
        unplanned = self._unplanned.get(shape)
        if unplanned is None:
            unplanned = self._unplanned[shape] = self.step.time(shape)
        return max(0.0, unplanned - dt), stats[0]
