"""Design-space sweep: decode performance per cost against L2 size, with and without PRESERVE.

For each L2 size the hardware template keeps every other figure (HBM, L2 bandwidth, links,
compute); only the capacity the planner and the working-set model see changes, and the die
grows by the SRAM's area (:mod:`llmtwin.preserve.die_cost`).

Performance is the geometric mean, over the workload mix, of the TP group's decode throughput
(``batch / step time``, tokens/s, the step model's engine included as ``StepModel.time``
charges it), so each workload counts by its relative change. Mix cells
whose weights plus KV cache do not fit in HBM are left out (N/A, as in the paper's Figure 4) and
listed. Cost is ``tp`` devices. The optimum is the L2 size with the highest perf per cost
(ties: the smaller L2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import geometric_mean

from llmtwin.errors import ConfigurationError
from llmtwin.physics.graph import BatchShape
from llmtwin.physics.step import StepModel
from llmtwin.preserve.config import PreserveConfig, WorkingSetConfig
from llmtwin.preserve.die_cost import MIB, CostModel
from llmtwin.preserve.evaluate import step_times

DEFAULT_L2_MIB: tuple[float, ...] = (
    4, 6, 8, 12, 16, 20, 24, 32, 40, 48, 56, 64, 72, 80, 96, 112, 128, 160, 192, 256, 320, 384, 448, 512,
)  # fmt: skip
"""L2 sizes swept by default, MiB: 4 to 512, finer where the optimum can move."""
DEFAULT_BATCHES: tuple[int, ...] = (1, 4, 16, 64)
DEFAULT_CONTEXTS: tuple[int, ...] = (1024, 4096, 16384)


@dataclass(frozen=True, slots=True)
class Workload:
    """One cell of the mix: ``batch`` sequences decoding with ``context`` cached tokens each."""

    batch: int
    context: int

    def shape(self) -> BatchShape:
        return BatchShape.decode(self.batch, self.context)


@dataclass(frozen=True, slots=True)
class SweepRow:
    l2_mb: float
    """L2 size, MiB."""
    prefetch: bool
    perf: float
    """Geometric mean decode throughput of the TP group over the mix, tokens/s."""
    cost: float
    """Cost of the TP group's devices, USD."""
    perf_per_cost: float
    """Tokens/s per USD."""


@dataclass(frozen=True, slots=True)
class SweepOptimum:
    without_prefetch_mb: float
    with_prefetch_mb: float
    perf_per_cost_gain: float
    """Best perf/cost with PRESERVE over best perf/cost without."""


@dataclass(frozen=True, slots=True)
class SweepResult:
    rows: tuple[SweepRow, ...]
    optimum: SweepOptimum
    workloads: tuple[Workload, ...]
    excluded: tuple[Workload, ...]
    """Mix cells whose weights and KV cache do not fit in HBM."""
    speedups: dict[float, tuple[float, ...]]
    """L2 MiB -> PRESERVE speedup of each included workload (same order as ``workloads``)."""


def split_mix(
    step_model: StepModel, batches: Sequence[int], contexts: Sequence[int]
) -> tuple[list[Workload], list[Workload]]:
    """The mix cells that fit in HBM and those that do not."""
    capacity = step_model.kv_capacity_tokens()
    fits: list[Workload] = []
    out: list[Workload] = []
    for b in batches:
        for c in contexts:
            w = Workload(b, c)
            (fits if b * (c + 1) <= capacity else out).append(w)
    return fits, out


def sweep_l2(
    step_model: StepModel,
    l2_mib: Sequence[float] = DEFAULT_L2_MIB,
    batches: Sequence[int] = DEFAULT_BATCHES,
    contexts: Sequence[int] = DEFAULT_CONTEXTS,
    config: PreserveConfig | None = None,
    cost: CostModel | None = None,
    working_set: WorkingSetConfig | None = None,
) -> SweepResult:
    """Perf, cost and perf per cost for every L2 size, with and without prefetching."""
    if not l2_mib or any(x < 0 for x in l2_mib):
        raise ConfigurationError(f"L2 sizes must be a non-empty list of sizes >= 0 MiB, got {list(l2_mib)}")
    cfg = config or PreserveConfig()
    cost_model = cost or CostModel()
    workloads, excluded = split_mix(step_model, batches, contexts)
    if not workloads:
        raise ConfigurationError(
            f"no workload of the mix fits in HBM ({step_model.model.name}, TP {step_model.tp}, "
            f"{step_model.prec.label()} on {step_model.hw.name})"
        )
    hw = step_model.hw
    rows: list[SweepRow] = []
    speedups: dict[float, tuple[float, ...]] = {}
    for mib in sorted(set(l2_mib)):
        l2 = mib * MIB
        base, pref = [], []
        for w in workloads:
            times = step_times(step_model, w.shape(), cfg, l2, working_set)  # engine included
            base.append(w.batch / times.vanilla_s)
            pref.append(w.batch / times.preserve_s)
        device_usd = step_model.tp * cost_model.device_usd(l2, hw.hbm_capacity)
        for flag, perf in ((False, geometric_mean(base)), (True, geometric_mean(pref))):
            rows.append(SweepRow(mib, flag, perf, device_usd, perf / device_usd))
        speedups[mib] = tuple(p / b for p, b in zip(pref, base, strict=True))
    return SweepResult(tuple(rows), _optimum(rows), tuple(workloads), tuple(excluded), speedups)


def _optimum(rows: Sequence[SweepRow]) -> SweepOptimum:
    def best(flag: bool) -> SweepRow:
        cands = [r for r in rows if r.prefetch == flag]
        return max(cands, key=lambda r: (r.perf_per_cost, -r.l2_mb))

    without, with_pf = best(False), best(True)
    return SweepOptimum(without.l2_mb, with_pf.l2_mb, with_pf.perf_per_cost / without.perf_per_cost)
