"""What a capacity study compares: rows (a policy at its fixed or tuned configuration) and the
search each row runs.

Two questions, at equal accelerators (every row runs the scenario's hardware, TP and, for the
rate question, its instance count, so equal count means equal cost):

* **rate**: per row and seed, the highest arrival rate at which at least ``target`` of the
  requests meet both SLOs (:func:`~llmtwin.capacity.search.rate_search`);
* **size** (``rate`` given): per row and seed, the fewest instances that hold that rate
  (:func:`~llmtwin.capacity.search.size_search`).

A baseline with a configuration knob (the disaggregated prefill:decode split, the chunked-prefill
token budget) appears twice: at the scenario's own (*fixed*, "paper-style") setting, and
*tuned*: at the setting the same search finds best, on the mean capacity over the seeds (rate
question) or on the attainment at each size (size question): by hill climbing from the fixed
split (capacity has one peak over the split), by trying every chunked-prefill budget (capacity
jumps where a chunk's iteration crosses the TBT SLO, so it may have several peaks).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from llmtwin.capacity.search import Bound, Probe, Search, hill_climb, lockstep, rate_search, size_search
from llmtwin.cluster.run import build_components
from llmtwin.errors import ConfigurationError
from llmtwin.scenario.loader import load_scenario
from llmtwin.scenario.spec import Scenario

CHUNK_BUDGETS = (256, 512, 1024, 2048, 4096, 8192)
"""Token budgets a tuned colocated-chunked row may take (vLLM's are powers of two around 2,048)."""


@dataclass(frozen=True, slots=True)
class Knob:
    """The one parameter of a policy that a tuned row searches."""

    param: str
    values: tuple[int, ...]
    """Candidate settings, ordered (for a split: the prefill instances, 1 .. instances - 1)."""
    fixed: int
    """The scenario's own setting."""
    climb: bool = True
    """Hill-climb from the fixed setting (a score with one peak); False: score every value."""

    def at(self, instances: int, base_instances: int) -> Knob:
        """The knob on a cluster of ``instances`` (a split scales with the cluster)."""
        if self.param != "prefill_instances":
            return self
        fixed = min(instances - 1, max(1, round(self.fixed * instances / base_instances)))
        return Knob(self.param, tuple(range(1, instances)), fixed, self.climb)

    def best(self, score: Callable[[int], Search[float]]) -> Search[tuple[int, dict[int, float]]]:
        """The index of the best value: by hill climbing, or by scoring every value."""
        if self.climb:
            return hill_climb(score, self.values, self.values.index(self.fixed))
        return scan(score, len(self.values))


def scan(score: Callable[[int], Search[float]], n: int) -> Search[tuple[int, dict[int, float]]]:
    """Score every index at once; the best (ties: the lowest index) and every score."""
    got = yield from lockstep([score(i) for i in range(n)])
    scores = dict(enumerate(got))
    return max(scores, key=lambda i: (scores[i], -i)), scores


def knob_of(s: Scenario) -> Knob | None:
    """The knob of ``s``'s policy on ``s``'s cluster (None: nothing to tune)."""
    params, n = s.policy.params, s.cluster.instances
    if s.policy.name == "disaggregated" and n >= 3:
        fixed = int(params.get("prefill_instances", 0)) or max(1, n // 3)
        return Knob("prefill_instances", tuple(range(1, n)), fixed)
    if s.policy.name == "colocated-chunked":
        # Every budget is tried: the score has thresholds (a chunk's iteration crossing the TBT
        # SLO), so it need not fall away on both sides of its best value.
        fixed = int(params.get("chunk_tokens", 2048))
        return Knob("chunk_tokens", tuple(sorted({*CHUNK_BUDGETS, fixed})), fixed, climb=False)
    return None


@dataclass(frozen=True, slots=True)
class Row:
    policy: str
    tuned: bool
    knob: Knob | None

    @property
    def label(self) -> str:
        if self.knob is None:
            return self.policy
        return f"{self.policy} ({'tuned' if self.tuned else 'fixed'})"


@dataclass(frozen=True, slots=True)
class Study:
    """Everything every row's search shares."""

    scenario: str
    """Scenario reference (name or path), as the workers load it."""
    overrides: tuple[str, ...]
    """``--set`` and SLO overrides, applied to every probe."""
    target: float
    """SLO attainment a run must reach to hold (fraction of requests)."""
    seeds: tuple[int, ...]
    instances: int
    tolerance: float
    """Rate search: stop when the bracket is within this fraction of its top."""
    start_rate: float
    rate: float | None = None
    """The size question's arrival rate (None: the rate question)."""
    max_instances: int = 0

    def probe(
        self, policy: str, seed: int, *, rate: float, instances: int, setting: tuple[str, int] | None
    ) -> Probe:
        ov = [
            *self.overrides,
            f"seed={seed}",
            f"workload.rate_rps={rate!r}",
            f"cluster.instances={instances}",
        ]
        if setting is not None:
            ov.append(f"policies.{policy}.{setting[0]}={setting[1]}")
        return Probe(self.scenario, policy, tuple(ov))


@dataclass(slots=True)
class RowResult:
    """One row's answer: per seed, the bound found and the knob setting it was found at."""

    row: Row
    bounds: list[Bound] = field(default_factory=list)
    settings: list[int | None] = field(default_factory=list)
    scores: dict[int, float] = field(default_factory=dict)
    """Tuned rows, rate question: mean capacity over the seeds of every setting tried."""

    def values(self) -> list[float]:
        """Per seed: the answer (capacity, or instances), NaN where no value held."""
        return [math.nan if b.holds is None else b.holds for b in self.bounds]


def rows_for(policies: Sequence[tuple[str, Knob | None]], tune: bool) -> list[Row]:
    """Each policy's rows: fixed, and tuned too when it has a knob and ``tune``."""
    out = []
    for policy, knob in policies:
        out.append(Row(policy, False, knob))
        if knob is not None and tune:
            out.append(Row(policy, True, knob))
    return out


def row_search(study: Study, row: Row) -> Search[RowResult]:
    if study.rate is None:
        return _rate_row(study, row)
    return _size_row(study, row, study.rate)


def _rate_row(study: Study, row: Row) -> Search[RowResult]:
    knob = row.knob

    def per_seed(setting: tuple[str, int] | None) -> list[Search[Bound]]:
        def at(seed: int) -> Callable[[float], Probe]:
            return lambda r: study.probe(row.policy, seed, rate=r, instances=study.instances, setting=setting)

        return [rate_search(at(s), study.target, study.start_rate, study.tolerance) for s in study.seeds]

    result = RowResult(row)
    if knob is None or not row.tuned:
        setting = None if knob is None else (knob.param, knob.fixed)
        result.bounds = yield from lockstep(per_seed(setting))
        result.settings = [None if knob is None else knob.fixed] * len(study.seeds)
        return result
    found: dict[int, list[Bound]] = {}

    def score(i: int) -> Search[float]:
        bounds = yield from lockstep(per_seed((knob.param, knob.values[i])))
        found[i] = bounds
        return _mean([b.holds or 0.0 for b in bounds])

    best, scores = yield from knob.best(score)
    result.bounds = found[best]
    result.settings = [knob.values[best]] * len(study.seeds)
    result.scores = {knob.values[i]: v for i, v in sorted(scores.items())}
    return result


def _size_row(study: Study, row: Row, rate: float) -> Search[RowResult]:
    accellm = row.policy == "accellm"
    step = 2 if accellm else 1
    smallest = 2 if accellm or row.policy == "disaggregated" else 1
    largest = study.max_instances or 8 * study.instances

    def per_seed(seed: int, chosen: dict[int, int | None]) -> Search[Bound]:
        def holds(n: int) -> Search[bool]:
            knob = None if row.knob is None else row.knob.at(n, study.instances)
            if knob is None or (not row.tuned and knob.param == "prefill_instances" and n < 2):
                (got,) = yield [study.probe(row.policy, seed, rate=rate, instances=n, setting=None)]
                chosen[n] = None
                return got >= study.target
            if not row.tuned:
                setting = (knob.param, knob.fixed)
                (got,) = yield [study.probe(row.policy, seed, rate=rate, instances=n, setting=setting)]
                chosen[n] = knob.fixed
                return got >= study.target

            def score(i: int) -> Search[float]:
                setting = (knob.param, knob.values[i])
                (got,) = yield [study.probe(row.policy, seed, rate=rate, instances=n, setting=setting)]
                return got

            best, scores = yield from knob.best(score)
            chosen[n] = knob.values[best]
            return scores[best] >= study.target

        return size_search(holds, study.instances, step, smallest, largest)

    chosen: list[dict[int, int | None]] = [{} for _ in study.seeds]
    result = RowResult(row)
    result.bounds = yield from lockstep([per_seed(seed, chosen[i]) for i, seed in enumerate(study.seeds)])
    result.settings = [
        None if b.holds is None else chosen[i].get(int(b.holds)) for i, b in enumerate(result.bounds)
    ]
    return result


def expected_runs(study: Study, row: Row) -> int:
    """A rough count of the runs a row's search needs (for the progress estimate)."""
    per_search = 6 if study.rate is None else 5
    configs = 1 if not row.tuned or row.knob is None else 4 if row.knob.climb else len(row.knob.values)
    return len(study.seeds) * per_search * configs


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def make_study(
    ref: str,
    overrides: Sequence[str],
    policies: Sequence[str],
    *,
    target: float,
    seeds: int = 3,
    tolerance: float = 0.05,
    start_rate: float | None = None,
    rate: float | None = None,
    max_instances: int = 0,
    tune: bool = True,
) -> tuple[Study, list[Row], Scenario]:
    """The study of scenario ``ref`` (with ``overrides``) for ``policies``, its rows, and the
    scenario as loaded; every policy's parameters are checked before anything runs."""
    base = load_scenario(ref, overrides)
    if base.workload.arrival == "trace" or base.workload.phases:
        raise ConfigurationError(
            f"{base.name}: capacity varies workload.rate_rps, which a trace replay or a phased "
            "workload ignores (use poisson or gamma arrivals)"
        )
    knobs = []
    for name in policies:
        s = load_scenario(ref, overrides, name)
        build_components(s, [])  # the policy checks its parameters (and the cluster) now
        knobs.append((name, knob_of(s)))
    study = Study(
        scenario=ref,
        overrides=tuple(overrides),
        target=target,
        seeds=tuple(base.seed + i for i in range(seeds)),
        instances=base.cluster.instances,
        tolerance=tolerance,
        start_rate=start_rate or base.workload.rate_rps,
        rate=rate,
        max_instances=max_instances,
    )
    return study, rows_for(knobs, tune=tune), base
