"""What the serving engine adds to a PRESERVE step, priced by :mod:`llmtwin.physics.overhead`.

``StepModel.time(shape, l2_bytes=plan)`` prices an iteration as the engine's serial overhead plus
the CPU's kernel-dispatch queue (:func:`~llmtwin.physics.overhead.launch_pipeline`) over the op GPU
times. The three timelines here are priced the same way, so ``llmtwin preserve`` and
``llmtwin step --preserve`` agree:

* each main-stream span is one dispatched kernel whose GPU time is its duration, including any
  wait for a prefetch (a fused GEMM+allreduce is one kernel, so one dispatch);
* prefetch ops are not dispatched by the engine's CPU loop (they belong to the compiled graph the
  planner pass rewrites), as ``StepModel.time`` assumes too.

The queue runs over the timeline the planner simulated without dispatch gaps. A gap only leaves
HBM idle for longer, which gives the side stream more time, so the result is exact whenever no
consumer waits and no op is stretched (the defaults: ``idle_only`` and plans that fit their
windows) and an upper bound otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from llmtwin.physics.graph import BatchShape
from llmtwin.physics.overhead import launch_pipeline
from llmtwin.physics.step import StepModel


@dataclass(frozen=True, slots=True)
class EngineCost:
    """The engine's two costs for one iteration; the default (zero) is pure device physics."""

    launch_s: float = 0.0
    """CPU seconds to dispatch one kernel (``EngineSpec.per_kernel_launch_s``)."""
    serial_s: float = 0.0
    """Serial seconds the device waits for (``EngineSpec.serial_s`` of this iteration)."""

    def iteration_s(
        self,
        before: Sequence[float],
        layer: Sequence[float] = (),
        layers: int = 0,
        after: Sequence[float] = (),
    ) -> float:
        """Seconds of an iteration whose kernels take ``before``, then ``layers`` times ``layer``,
        then ``after`` seconds of GPU time."""
        return launch_pipeline(before, layer, layers, after, self.launch_s) + self.serial_s


def engine_cost(step_model: StepModel, shape: BatchShape) -> EngineCost:
    """The engine of ``step_model`` for an iteration of ``shape``, as ``StepModel.time`` charges it."""
    engine, model = step_model.engine, step_model.model
    serial = engine.serial_s(step_model.hw, model.layers, model.vocab, shape)
    return EngineCost(engine.per_kernel_launch_s, serial)
