"""The two baselines PRESERVE is compared with.

**Vanilla.** Every op runs after the previous one; the allreduce leaves the device idle. This is
the serial timeline with an empty plan, i.e. the sum of ``StepModel.timeline`` op times.

**Fused GEMM+allreduce** (MC2, FLUX, ``ShmemMatmulAllReduce``). The row-parallel GEMM right
before an allreduce is split into ``n`` chunks of output columns (each chunk reads ``1/n`` of
the weight, so a memory-bound decode GEMM splits evenly); chunk ``i``'s allreduce starts when
both its GEMM chunk and chunk ``i - 1``'s allreduce are done. Each chunk's allreduce is priced
by the device model itself (:func:`llmtwin.physics.collectives.collective_time` of ``1/n`` of the
message) minus the fixed latency ``alpha`` (``allreduce_alpha_s``), which the fused kernel pays
once: during the GEMM when ``FusedConfig.hides_alpha`` (one fused kernel with pre-registered
buffers), after the last chunk otherwise. ``alpha`` excludes the ring's per-hop link latency
(``2 (tp - 1) x link latency``, see :mod:`llmtwin.physics.collectives`), so every chunk still
pays its own hops: splitting a latency-bound decode message costs that latency once per chunk,
and only the size-dependent part shrinks with ``n``. The GEMM keeps its own time from the
device model; being one kernel, it pays the GEMM fixed cost (``gemm_overhead_s``) once, before
its first chunk, and its variable part splits evenly over the chunks. The best ``n`` among powers of
two up to ``max_chunks`` is used; ``n = 1`` without hidden alpha is exactly the vanilla pair, so
fused is never slower. What it cannot do is overlap anything but that one GEMM: the last chunk's
allreduce stays exposed and nothing can overlap the KV-bound attention.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmtwin.physics.collectives import collective_time
from llmtwin.preserve.config import FusedConfig
from llmtwin.preserve.op_costs import OpCosts
from llmtwin.preserve.timeline import OpSpan, Timeline


@dataclass(frozen=True, slots=True)
class FusedPair:
    """One GEMM+allreduce pair and its fused time."""

    gemm: int
    allreduce: int
    serial_s: float
    fused_s: float
    chunks: int


def fused_pairs(costs: OpCosts, config: FusedConfig) -> list[FusedPair]:
    """Every allreduce directly preceded by a GEMM, with its best fused time."""
    out = []
    ops = costs.ops
    for i in range(1, len(ops)):
        op = ops[i]
        if op.collective != "all_reduce" or ops[i - 1].kind != "gemm":
            continue
        serial_s = costs.vanilla_time(i - 1) + costs.vanilla_time(i)
        best_s, best_n = serial_s, 1
        n = 1
        while n <= config.max_chunks:
            t = fused_time(costs, i - 1, i, n, config.hides_alpha)
            if t < best_s - 1e-15:
                best_s, best_n = t, n
            n *= 2
        out.append(FusedPair(i - 1, i, serial_s, best_s, best_n))
    return out


def fused_time(costs: OpCosts, gemm: int, allreduce: int, chunks: int, hides_alpha: bool) -> float:
    """Seconds op ``gemm`` fused with the allreduce op ``allreduce`` takes in ``chunks`` chunks."""
    hw = costs.hw
    gemm_s = costs.vanilla_time(gemm)
    chunk_ar = collective_time(hw, "all_reduce", costs.tp, costs.ops[allreduce].message_bytes / chunks)
    alpha = min(hw.efficiency.allreduce_alpha_s, chunk_ar)
    launch = min(hw.efficiency.gemm_overhead_s, gemm_s)  # one fused kernel: one GEMM fixed cost
    chunk_s = (gemm_s - launch) / chunks
    links_free = alpha if hides_alpha else 0.0
    for i in range(1, chunks + 1):
        start = max(links_free, launch + i * chunk_s)
        links_free = start + chunk_ar - alpha
    return links_free if hides_alpha else links_free + alpha


def fused_timeline(costs: OpCosts, config: FusedConfig) -> Timeline:
    """The serial timeline with each fusable GEMM+allreduce pair replaced by one fused op."""
    pairs = {p.gemm: p for p in fused_pairs(costs, config)}
    spans: list[OpSpan] = []
    t = 0.0
    j = 0
    ops = costs.ops
    while j < len(ops):
        op = ops[j]
        if j in pairs:
            p = pairs[j]
            name = f"{op.name}+{ops[p.allreduce].name}"
            spans.append(OpSpan(j, name, "fused", op.layer, t, t + p.fused_s, 0.0, 0.0,
                                costs.hbm_bytes(j) + costs.hbm_bytes(p.allreduce)))  # fmt: skip
            t += p.fused_s
            j = p.allreduce + 1
            continue
        d = costs.vanilla_time(j)
        spans.append(OpSpan(j, op.name, op.kind, op.layer, t, t + d, 0.0, 0.0, costs.hbm_bytes(j)))
        t += d
        j += 1
    return Timeline(tuple(spans), ())
