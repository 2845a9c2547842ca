"""One iteration of one instance (a TP group): op timeline, total time, memory footprint.

:class:`StepModel` is what the rest of the twin calls: the cluster engines ask it for iteration
times, the PRESERVE planner for op timelines, the CLI for both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from llmtwin.errors import ConfigurationError
from llmtwin.hardware.spec import HardwareSpec
from llmtwin.models.spec import ModelSpec
from llmtwin.physics.bands import Band
from llmtwin.physics.graph import BatchShape, Op, ShardPlan, attention_ops, build_graph, shard
from llmtwin.physics.op_time import op_time
from llmtwin.physics.overhead import NO_ENGINE, EngineSpec, launch_pipeline
from llmtwin.physics.precision import Precision
from llmtwin.physics.uncertainty import device_band, iteration_band

ROWS_CACHE_SIZE = 1 << 16
"""Row counts whose op times a :class:`StepModel` keeps at most (then it starts again)."""

ACTIVATION_RESERVE_FRACTION = 0.05
"""Share of HBM kept for activations, workspace and fragmentation (vLLM's gpu_memory_utilization
of 0.9-0.95 plays the same role)."""


@dataclass(frozen=True, slots=True)
class OpTiming:
    """One op's cost on one device in a given iteration."""

    name: str
    layer: int
    time_s: float
    hbm_bytes: float
    l2_bytes: float
    flops: float


class StepModel:
    """Cost model of one model replica on a TP group of ``tp`` devices of one hardware type."""

    def __init__(
        self,
        hw: HardwareSpec,
        model: ModelSpec,
        tp: int,
        prec: Precision | None = None,
        engine: EngineSpec = NO_ENGINE,
        check_fit: bool = True,
    ) -> None:
        self.hw = hw
        self.model = model
        self.tp = tp
        self.prec = prec or Precision()
        self.engine = engine.on_host(hw.host_cpu_speed)
        """The engine profile as it runs on this hardware's host (CPU terms rescaled)."""
        self.plan: ShardPlan = shard(model, tp)
        self._one_layer_model = replace(model, layers=1)
        self._by_rows: dict[tuple[int, int], tuple[list[float], list[float], list[float], list[float]]] = {}
        """(tokens, logit_rows) -> the times of every op but attention (see :meth:`stage_times`)."""
        if check_fit and self.weight_bytes_per_device() > hw.hbm_capacity * (1 - ACTIVATION_RESERVE_FRACTION):
            raise ConfigurationError(
                f"{model.name} weights ({self.weight_bytes_per_device() / 1e9:.1f} GB per device at TP {tp}, "
                f"{self.prec.weights}) do not fit in the {hw.hbm_capacity / 1e9:.0f} GB HBM of {hw.name}"
            )

    # -- memory ---------------------------------------------------------------------------------
    def weight_bytes_per_device(self) -> float:
        m = self.model
        per_layer = m.attention_params_per_layer() + m.mlp_params_per_layer()
        sharded = m.layers * per_layer / self.tp
        embeddings = m.embedding_params() / self.tp
        return (sharded + embeddings) * self.prec.weight_bytes

    def kv_bytes_per_token_per_device(self) -> float:
        """KV-cache bytes one token occupies on one device (all layers, K and V)."""
        return 2.0 * self.model.layers * self.plan.kv_heads * self.model.head_dim * self.prec.kv_bytes

    def kv_capacity_tokens(self, reserve_fraction: float = ACTIVATION_RESERVE_FRACTION) -> int:
        """Tokens of KV cache that fit next to the weights on every device of the group."""
        free = self.hw.hbm_capacity * (1 - reserve_fraction) - self.weight_bytes_per_device()
        return max(0, int(free // self.kv_bytes_per_token_per_device()))

    # -- time -----------------------------------------------------------------------------------
    def ops(self, shape: BatchShape) -> list[Op]:
        return build_graph(self.model, self.tp, shape, self.prec)

    def timeline(self, shape: BatchShape, l2_bytes: Mapping[int, float] | None = None) -> list[OpTiming]:
        """Per-op cost; ``l2_bytes`` maps op index to bytes served from L2 (a prefetch plan)."""
        hits = l2_bytes or {}
        out = []
        for i, op in enumerate(self.ops(shape)):
            l2 = min(hits.get(i, 0.0), op.prefetchable_bytes)
            t = op_time(self.hw, op, self.prec, self.tp, l2)
            out.append(OpTiming(op.name, op.layer, t, op.hbm_bytes - l2, l2, op.flops))
        return out

    def device_time(self, shape: BatchShape) -> float:
        """Seconds of device work (all ops back to back, no engine overhead). Layers are identical,
        so one representative layer is costed and multiplied: O(ops per layer), not O(layers)."""
        if shape.tokens <= 0:
            return 0.0
        before, layer, after = self.stage_times(shape)
        return sum(before) + self.model.layers * sum(layer) + sum(after)

    def ops_one_layer(self, shape: BatchShape) -> list[Op]:
        """The ops outside the layers plus those of layer 0 only."""
        return build_graph(self._one_layer_model, self.tp, shape, self.prec)

    def time(self, shape: BatchShape, l2_bytes: Mapping[int, float] | None = None) -> float:
        """Seconds one iteration takes, including the engine's overhead.

        The engine's serial overhead (and its own GPU work) adds to the device work; its per-kernel
        dispatch cost overlaps with it through :func:`~llmtwin.physics.overhead.launch_pipeline`. A
        batch of prompts larger than the engine's ``max_batched_tokens`` runs as several forward
        passes (:meth:`EngineSpec.passes`). ``l2_bytes`` (op index -> bytes read from L2, a PRESERVE
        plan) prices every op of every layer on its own (plans differ between layers), which costs
        O(ops) instead of O(ops per layer).
        """
        if shape.tokens <= 0:
            return 0.0
        engine = self.engine
        if l2_bytes:
            times = self.op_times(shape, l2_bytes)
            work = launch_pipeline(times, [], 0, [], engine.per_kernel_launch_s)
            nominal = work + engine.serial_s(self.hw, self.model.layers, self.model.vocab, shape)
        else:
            nominal = sum(self._pass_time(p) for p in engine.passes(shape))
        return nominal * self.band(shape).edge(engine.band_edge) if engine.band_edge else nominal

    def band(self, shape: BatchShape) -> Band:
        """Multipliers of :meth:`time` between which the measured time is expected (80% of the
        calibration points of this region): the engine's iteration band where it has one, else
        the time-weighted band of the device ops (llmtwin.physics.uncertainty)."""
        whole = iteration_band(self.hw, self.engine, self.tp, shape)
        if whole is not None:
            return whole
        weighted: list[tuple[Op, float]] = []
        for op in self.ops_one_layer(shape):
            t = op_time(self.hw, op, self.prec, self.tp)
            weighted.append((op, t * (self.model.layers if op.layer == 0 else 1)))
        return device_band(self.hw, self.tp, shape.tokens, weighted)

    def _pass_time(self, shape: BatchShape) -> float:
        """One forward pass of the framework: the dispatch queue over its op times, plus the rest."""
        engine = self.engine
        before, layer, after = self.stage_times(shape)
        work = launch_pipeline(before, layer, self.model.layers, after, engine.per_kernel_launch_s)
        return work + engine.serial_s(self.hw, self.model.layers, self.model.vocab, shape)

    def stage_times(self, shape: BatchShape) -> tuple[list[float], list[float], list[float]]:
        """Op times before the layers, of one layer, and after the layers, in graph order.

        Every op but attention depends on the shape only through its rows (``tokens`` and
        ``logit_rows``), so their times are kept per rows and only the attention ops are built
        and costed for each shape: the same times in the same order as costing the whole graph,
        at a fraction of the cost (building the graph was about four fifths of costing a shape)."""
        key = (shape.tokens, shape.logit_rows)
        rows = self._by_rows.get(key)
        if rows is None:
            if len(self._by_rows) >= ROWS_CACHE_SIZE:
                self._by_rows.clear()
            rows = self._by_rows[key] = self._row_times(shape)
        before, head, tail, after = rows
        attention = [
            op_time(self.hw, op, self.prec, self.tp)
            for op in attention_ops(self._one_layer_model, self.tp, shape, self.prec)
        ]
        return list(before), [*head, *attention, *tail], list(after)

    def op_times(self, shape: BatchShape, l2_bytes: Mapping[int, float]) -> list[float]:
        """Every op's time in graph order, ``l2_bytes`` (op index -> bytes) served from L2: the
        times of :meth:`timeline`, without building every layer's ops. The layers' ops differ
        only in their names, which no op's time depends on, so one layer's ops stand for all;
        only the ops the plan serves something from L2 are costed again."""
        hw, prec, tp = self.hw, self.prec, self.tp
        priced = [(op, op_time(hw, op, prec, tp), op.prefetchable_bytes) for op in self.ops_one_layer(shape)]
        stages = (
            [p for p in priced if p[0].layer < 0],
            [p for p in priced if p[0].layer == 0],
            [p for p in priced if p[0].layer > 0],
        )
        times: list[float] = []
        i = 0
        for stage, repeat in zip(stages, (1, self.model.layers, 1), strict=True):
            for _ in range(repeat):
                for op, t, most in stage:
                    hit = l2_bytes.get(i)
                    l2 = min(hit, most) if hit else 0.0
                    times.append(op_time(hw, op, prec, tp, l2) if l2 else t)
                    i += 1
        return times

    def _row_times(self, shape: BatchShape) -> tuple[list[float], list[float], list[float], list[float]]:
        """Times of every op of ``shape``'s graph but attention: before the layers, in the layer
        before and after its attention, after the layers (a shape with rows has attention)."""
        before: list[float] = []
        head: list[float] = []
        tail: list[float] = []
        after: list[float] = []
        past = False
        for op in self.ops_one_layer(shape):
            if op.kind == "attention":
                past = True
                continue
            t = op_time(self.hw, op, self.prec, self.tp)
            if op.layer < 0:
                before.append(t)
            elif op.layer == 0:
                (tail if past else head).append(t)
            else:
                after.append(t)
        return before, head, tail, after
