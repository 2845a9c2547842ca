"""The two baselines PRESERVE is compared with.

**Vanilla.** Every op runs after the previous one; the allreduce leaves the device idle. This is
the serial timeline with an empty plan, i.e. the sum of ``StepModel.timeline`` op times.

**Fused GEMM+allreduce** (MC2, FLUX, ``ShmemMatmulAllReduce``). The row-parallel GEMM right
before an allreduce is split into ``n`` chunks of output columns (each chunk reads ``1/n`` of
the weight, so a memory-bound decode GEMM splits evenly); chunk ``i``'s allreduce starts when
both its GEMM chunk and chunk ``i - 1``'s allreduce are done. The device model's allreduce time
``T_ar`` (:func:`llmtwin.physics.collectives.collective_time`) is split into its fixed latency
``alpha`` (``allreduce_alpha_s``) and the data-dependent rest; each chunk's allreduce costs
``rest / n`` plus one link latency for its own hand-shake (none when ``n = 1``). ``alpha``
(synchronisation, launch) runs during the GEMM when ``FusedConfig.hides_alpha`` (one fused kernel
with pre-registered buffers) or after the last chunk otherwise. The best ``n`` among powers of
two up to ``max_chunks`` is used; ``n = 1`` without hidden alpha is exactly the vanilla pair, so
fused is never slower. What it cannot do is overlap anything but that one GEMM: the last chunk's
allreduce stays exposed and nothing can overlap the KV-bound attention.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmtwin.preserve.config import FusedConfig
from llmtwin.preserve.costs import OpCosts
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
        gemm_s = costs.vanilla_time(i - 1)
        ar_s = costs.vanilla_time(i)
        best_s, best_n = gemm_s + ar_s, 1
        n = 1
        while n <= config.max_chunks:
            t = fused_time(costs, gemm_s, ar_s, n, config.hides_alpha)
            if t < best_s - 1e-15:
                best_s, best_n = t, n
            n *= 2
        out.append(FusedPair(i - 1, i, gemm_s + ar_s, best_s, best_n))
    return out


def fused_time(costs: OpCosts, gemm_s: float, ar_s: float, chunks: int, hides_alpha: bool) -> float:
    """Seconds a GEMM of ``gemm_s`` fused with an allreduce of ``ar_s`` takes in ``chunks`` chunks."""
    hw = costs.hw
    alpha = min(hw.efficiency.allreduce_alpha_s, ar_s)
    rest = ar_s - alpha
    handshake = hw.link.latency_s if chunks > 1 else 0.0
    launch = min(hw.efficiency.kernel_overhead_s, gemm_s)  # one fused kernel: one launch
    chunk_s = (gemm_s - launch) / chunks
    links_free = alpha if hides_alpha else 0.0
    for i in range(1, chunks + 1):
        start = max(links_free, launch + i * chunk_s)
        links_free = start + rest / chunks + handshake
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
