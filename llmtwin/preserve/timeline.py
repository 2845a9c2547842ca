"""Two-stream timeline of one step: the main stream runs the ops in order, the side stream the
prefetch plan.

* A window's prefetch ops are issued when its allreduce starts and run one after another
  (FIFO) on the side stream, sharing HBM with whatever the main stream runs at that moment
  (:mod:`llmtwin.preserve.channel`).
* A consumer waits until every prefetch issued for it has completed (the main stream waits on
  the side stream's event, as SGLang's CMO stream does); it then reads those bytes at L2
  bandwidth and the rest of the tensor from HBM. With a plan that fits its windows the wait is
  zero; a plan that overcommits pays here, not in a hidden assumption.
* Prefetched bytes hold L2 from issue until their consumer runs; the L2 left to an op's working
  set is the capacity minus those bytes (:mod:`llmtwin.preserve.op_costs`).
* With ``streaming_allocates`` every byte the main stream reads from HBM and every prefetched
  byte enters an LRU L2; a prefetch survives only as far as fewer than ``capacity - bytes`` newer
  bytes entered before its consumer reads it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from llmtwin.preserve.channel import Transfer, run_side_stream, segment
from llmtwin.preserve.config import PreserveConfig
from llmtwin.preserve.op_costs import OpCosts
from llmtwin.preserve.plan import PrefetchItem, PrefetchPlan

_FOREVER_S = 1.0e9


@dataclass(frozen=True, slots=True)
class OpSpan:
    """One op on the main stream."""

    index: int
    name: str
    kind: str
    layer: int
    start_s: float
    end_s: float
    wait_s: float
    """Time the main stream waited for this op's prefetches before ``start_s``."""
    l2_bytes: float
    """Bytes of its read-only operands read from L2."""
    hbm_bytes: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True, slots=True)
class PrefetchSpan:
    """One prefetch op on the side stream."""

    allreduce: int
    order: int
    tensor: str
    consumer: int
    bytes: float
    hit_bytes: float
    """Bytes still in L2 when the consumer read them."""
    start_s: float
    end_s: float


@dataclass(frozen=True, slots=True)
class Timeline:
    ops: tuple[OpSpan, ...]
    prefetches: tuple[PrefetchSpan, ...]

    @property
    def step_s(self) -> float:
        return self.ops[-1].end_s if self.ops else 0.0

    @property
    def wait_s(self) -> float:
        return sum(s.wait_s for s in self.ops)

    def gpu_times(self, layers: range | None = None) -> list[float]:
        """Each main-stream op's seconds on the device, its wait for prefetches included (what
        the engine's dispatch queue sees as the kernel's GPU time); ``layers``: only those."""
        return [s.end_s - s.start_s + s.wait_s for s in self.ops if layers is None or s.layer in layers]

    def layer_span_s(self, layer: int) -> float:
        """Seconds from the start of ``layer``'s first op (including its wait) to its last op's end."""
        spans = [s for s in self.ops if s.layer == layer]
        return spans[-1].end_s - (spans[0].start_s - spans[0].wait_s) if spans else 0.0

    def l2_hits(self) -> dict[int, float]:
        return {s.index: s.l2_bytes for s in self.ops if s.l2_bytes > 0}


def simulate(costs: OpCosts, plan: PrefetchPlan, config: PreserveConfig) -> Timeline:
    """Run the step with ``plan`` (an empty plan gives the vanilla, serial step)."""
    return _Simulation(costs, plan, config).run()


class _Simulation:
    """State of one two-stream run; :meth:`run` walks the main stream op by op."""

    def __init__(self, costs: OpCosts, plan: PrefetchPlan, config: PreserveConfig) -> None:
        self.costs = costs
        self.config = config
        self.keyed: list[tuple[int, PrefetchItem]] = [
            (w.allreduce, it) for w in plan.windows for it in w.items
        ]
        self.issue_at: dict[int, list[int]] = {}
        self.consumers: dict[int, list[int]] = {}
        for key, (allreduce, it) in enumerate(self.keyed):
            self.issue_at.setdefault(allreduce, []).append(key)
            self.consumers.setdefault(it.consumer, []).append(key)
        self.prefetch_rate = costs.hbm_rate * config.prefetch_bandwidth_fraction
        self.queue: deque[Transfer] = deque()
        self.done: dict[int, Transfer] = {}
        self.inserted = 0.0  # bytes that entered L2 so far (eviction model)
        self.mark: dict[int, float] = {}  # ``inserted`` right after a prefetch completed
        self.claimed: dict[int, float] = {}  # issued prefetches whose consumer has not run
        self.hit_of: dict[int, float] = {}

    def run(self) -> Timeline:
        costs, config = self.costs, self.config
        spans: list[OpSpan] = []
        t = 0.0
        for j in range(len(costs)):
            for key in self.issue_at.get(j, ()):
                nbytes = self.keyed[key][1].bytes
                self.queue.append(Transfer(key, config.prefetch_op_overhead_s, nbytes))
                self.claimed[key] = nbytes
            wait = 0.0
            pending = [k for k in self.consumers.get(j, ()) if k not in self.done]
            if pending:  # the main stream is idle: the prefetch gets all of HBM
                wait = self._advance(t, _FOREVER_S, self.prefetch_rate, until=max(pending))
                t += wait
            hits = self._consume(j)
            avail = costs.l2_capacity - sum(self.claimed.values())
            op_s = costs.time(j, hits, avail)
            op_hbm = costs.hbm_bytes(j, hits, avail)
            for k in self.consumers.get(j, ()):
                self.claimed.pop(k, None)
            duration = op_s
            if self.queue:
                seg = segment(j, op_s, op_hbm, costs.hbm_rate, self.prefetch_rate, config.contention)
                busy = self._advance(t, seg.duration_s, seg.rate)
                if seg.duration_s > 0:
                    duration = op_s + seg.stretch_s * busy / seg.duration_s
            if config.streaming_allocates:
                self.inserted += op_hbm
            op = costs.ops[j]
            spans.append(OpSpan(j, op.name, op.kind, op.layer, t, t + duration, wait, hits, op_hbm))
            t += duration
        return Timeline(tuple(spans), self._prefetch_spans())

    def _consume(self, j: int) -> float:
        """Bytes op ``j`` reads from L2: its completed prefetches, less what the LRU evicted."""
        hits = 0.0
        for k in self.consumers.get(j, ()):
            b = self.keyed[k][1].bytes
            if self.config.streaming_allocates:
                b = min(b, max(0.0, self.costs.l2_capacity - (self.inserted - self.mark[k])))
            self.hit_of[k] = b
            hits += b
        return hits

    def _advance(self, t0: float, duration_s: float, rate: float, until: int | None = None) -> float:
        before = list(self.queue)
        busy = run_side_stream(self.queue, t0, duration_s, rate, until)
        left = {id(x) for x in self.queue}
        for x in before:
            if id(x) not in left:
                self.inserted += self.keyed[x.key][1].bytes
                self.mark[x.key] = self.inserted
                self.done[x.key] = x
        return busy

    def _prefetch_spans(self) -> tuple[PrefetchSpan, ...]:
        out = []
        for key, (allreduce, it) in enumerate(self.keyed):
            x = self.done.get(key)
            start = x.start_s if x is not None and x.start_s is not None else float("nan")
            end = x.end_s if x is not None and x.end_s is not None else float("nan")
            out.append(
                PrefetchSpan(
                    allreduce,
                    it.order,
                    it.tensor,
                    it.consumer,
                    it.bytes,
                    self.hit_of.get(key, 0.0),
                    start,
                    end,
                )
            )
        return tuple(out)
