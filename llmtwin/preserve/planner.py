"""The PRESERVE planning rule (pure, deterministic).

For each allreduce ``a`` of the step, in order:

1. **Window.** ``a`` plus, with ``extend_window``, the elementwise/norm ops right after it. Each
   window op gives the side stream a share of HBM for a while (:mod:`llmtwin.preserve.channel`).
2. **Candidates.** The read-only operands (``Op.tensors``: weights, KV cache) of the ops after
   the window, up to the ``horizon_windows``-th next allreduce, minus what earlier windows
   already fetched of them; ordered by ``priority``.
3. **Bounds.** The L2 free for prefetch is its capacity minus the reserve, minus the live data of
   the ops from ``a`` to the horizon (their activations and collective buffers), minus earlier
   prefetches whose consumer has not run yet. The budget caps the window's bytes.
4. **Greedy booking.** Walk the candidates; give each ``min(rest of tensor, L2 free, budget
   left, bytes the side stream can still move before the window ends after one prefetch op's
   overhead)``; book it only if that is at least ``min_prefetch_bytes``, the whole tensor when
   ``partial`` is off, and it makes its consumer faster (a compute-bound consumer gains
   nothing from L2).
   With ``streaming_allocates`` (an LRU L2 that the main stream's reads also fill) a booking
   must also survive until its consumer: for it and for every earlier unconsumed prefetch,
   ``own bytes + bytes inserted after it until its consumer <= capacity``, where the inserted
   bytes are the later prefetches plus the main stream's HBM traffic from the window's start to
   that consumer (the serial traffic, an upper bound). Each booking lowers the slack of the
   older ones.
5. **Guards.** A window whose prefetches delay the main stream more than they save (``shared``
   contention) is dropped. Finally the pass declines the whole plan if the simulated step would
   not be faster than the serial one, the engine's kernel-dispatch queue included when one is
   given (:mod:`llmtwin.preserve.engine_cost`; a launch-bound step gains nothing): a compiler
   does not insert prefetches that do not pay.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from llmtwin.physics.graph import Op, Tensor
from llmtwin.preserve.channel import WindowChannel, segment
from llmtwin.preserve.config import PreserveConfig
from llmtwin.preserve.engine_cost import EngineCost
from llmtwin.preserve.op_costs import OpCosts
from llmtwin.preserve.plan import PrefetchItem, PrefetchPlan, PrefetchWindow
from llmtwin.preserve.timeline import simulate

_WINDOW_KINDS = ("elementwise", "norm")
_REL_ROUNDING = 1e-12
"""Relative difference between two step times that floating-point rounding can explain."""


def allreduce_indices(ops: Sequence[Op]) -> list[int]:
    return [i for i, op in enumerate(ops) if op.kind == "collective" and op.collective == "all_reduce"]


def window_ops(ops: Sequence[Op], allreduce: int, extend: bool) -> tuple[int, ...]:
    """The allreduce and, with ``extend``, the elementwise/norm ops that directly follow it."""
    out = [allreduce]
    j = allreduce + 1
    while extend and j < len(ops) and ops[j].kind in _WINDOW_KINDS and not ops[j].tensors:
        out.append(j)
        j += 1
    return tuple(out)


def plan_prefetch(costs: OpCosts, config: PreserveConfig, engine: EngineCost | None = None) -> PrefetchPlan:
    """The prefetch plan for the step whose op costs are ``costs``; ``engine`` (default: none)
    only enters the final guard, through its kernel-dispatch queue."""
    planner = _Planner(costs, config)
    plan = PrefetchPlan(costs.l2_capacity, tuple(planner.window(w, a) for w, a in enumerate(planner.ars)))
    if plan.prefetched_bytes > 0:
        launch = EngineCost(engine.launch_s if engine is not None else 0.0)
        step = launch.iteration_s(simulate(costs, plan, config).gpu_times())
        serial = launch.iteration_s([costs.vanilla_time(j) for j in range(len(costs))])
        # A launch-bound step gains nothing from L2 and its two queue sums then differ only by
        # rounding; a plan is kept only if it saves more than that.
        if step >= serial * (1.0 - _REL_ROUNDING):
            return PrefetchPlan(
                costs.l2_capacity,
                tuple(replace(w, items=(), stretch_s=0.0) for w in plan.windows),
                declined=f"prefetching would not make the step faster ({step:.6g} s vs {serial:.6g} s)",
            )
    return plan


class _Planner:
    """What the windows booked so far; :meth:`window` plans one allreduce's window."""

    def __init__(self, costs: OpCosts, config: PreserveConfig) -> None:
        self.costs = costs
        self.config = config
        self.ars = allreduce_indices(costs.ops)
        self.prefetch_rate = costs.hbm_rate * config.prefetch_bandwidth_fraction
        self.fetched: dict[tuple[int, str], float] = {}  # bytes of (consumer, tensor) booked so far
        self.pending: list[tuple[int, float]] = []  # (consumer, bytes) of booked prefetches
        self.hits: dict[int, float] = {}
        self.lru: list[list[float]] = []  # [consumer, slack bytes] of unconsumed bookings (LRU mode)
        self.streamed = [0.0]  # streamed[j]: main-stream HBM bytes of ops 0..j-1, serial
        for j in range(len(costs)):
            self.streamed.append(self.streamed[-1] + costs.hbm_bytes(j))

    def window(self, w: int, a: int) -> PrefetchWindow:
        costs, config, ops = self.costs, self.config, self.costs.ops
        wops = window_ops(ops, a, config.extend_window)
        horizon = w + config.horizon_windows
        end = self.ars[horizon] if horizon < len(self.ars) else len(ops)
        live = max((costs.live_bytes(j) for j in range(a, end)), default=0.0)
        resident = sum(b for c, b in self.pending if c >= a)
        free = max(0.0, costs.l2_capacity - config.l2_reserved_bytes - live - resident)
        free_at_start = free
        budget = float("inf") if config.budget_bytes is None else config.budget_bytes
        self.lru = [e for e in self.lru if e[0] >= a]
        lru_before = [list(e) for e in self.lru]
        channel = WindowChannel(
            [
                segment(j, costs.vanilla_time(j), costs.hbm_bytes(j), costs.hbm_rate, self.prefetch_rate,
                        config.contention)
                for j in wops
            ]
        )  # fmt: skip
        smallest = max(config.min_prefetch_bytes, 1.0)
        items: list[PrefetchItem] = []
        for j, tensor in _candidates(ops, wops[-1] + 1, end, config):
            key = (j, tensor.name)
            done = self.fetched.get(key, 0.0)
            rest = tensor.size - done
            if rest <= 0:
                continue
            room = min(free, budget)
            movable = channel.bytes_after(config.prefetch_op_overhead_s)
            if room < smallest or movable < smallest:
                break  # nothing more fits in L2, the budget or the window
            own_slack = costs.l2_capacity - (self.streamed[j] - self.streamed[a])
            nbytes = min(rest, room, movable, self._lru_room(own_slack))
            if nbytes < smallest or (not config.partial and nbytes < rest):
                continue
            before = self.hits.get(j, 0.0)
            saving = costs.time(j, before) - costs.time(j, before + nbytes)
            if saving <= 0:
                continue  # a compute-bound consumer gains nothing from L2
            moved, start, stop = channel.take(config.prefetch_op_overhead_s, nbytes)
            if moved <= 0:
                break
            items.append(
                PrefetchItem(len(items), tensor.name, tensor.kind, j, ops[j].name, done, moved,
                             tensor.size, start, stop, saving)
            )  # fmt: skip
            self._book(j, key, moved, own_slack)
            free -= moved
            budget -= moved
        stretch = channel.stretch_s()
        if items and sum(it.saving_s for it in items) <= stretch:
            for it in items:  # the window does not pay: undo it
                self.hits[it.consumer] -= it.bytes
                self.fetched[(it.consumer, it.tensor)] -= it.bytes
                self.pending.remove((it.consumer, it.bytes))
            self.lru = lru_before
            items, stretch = [], 0.0
        return PrefetchWindow(
            a, ops[a].name, ops[a].layer, wops, channel.window_s, channel.window_bytes, live, resident,
            free_at_start, config.budget_bytes, stretch, tuple(items),
        )  # fmt: skip

    def _lru_room(self, own_slack: float) -> float:
        """Bytes a new booking may take without evicting itself or an older unconsumed one."""
        if not self.config.streaming_allocates:
            return float("inf")
        return max(0.0, min([own_slack, *(e[1] for e in self.lru)]))

    def _book(self, consumer: int, key: tuple[int, str], nbytes: float, own_slack: float) -> None:
        self.fetched[key] = self.fetched.get(key, 0.0) + nbytes
        self.hits[consumer] = self.hits.get(consumer, 0.0) + nbytes
        self.pending.append((consumer, nbytes))
        if self.config.streaming_allocates:
            for e in self.lru:
                e[1] -= nbytes
            self.lru.append([float(consumer), own_slack - nbytes])


def _candidates(ops: Sequence[Op], first: int, end: int, config: PreserveConfig) -> list[tuple[int, Tensor]]:
    found = [(j, t) for j in range(first, end) for t in ops[j].tensors if t.size > 0]
    if config.priority == "kv_first":
        found.sort(key=lambda jt: (jt[1].kind != "kv", jt[0]))
    elif config.priority == "weights_first":
        found.sort(key=lambda jt: (jt[1].kind != "weight", jt[0]))
    return found
