"""Runs the probes of many searches on worker processes, shows progress, reuses repeated probes.

Every search (``search.py``) is resumed as soon as its whole batch of probes has been measured;
probes from all searches share one queue, so the workers stay busy while searches wait. A probe
asked for twice (the fixed and tuned rows of a baseline start at the same setting) runs once.
Results do not depend on ``jobs`` or on the order runs finish in: each search is a deterministic
function of its probes' attainments, and each probe's run of its seed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, TypeVar

from llmtwin.capacity.search import Probe, Search
from llmtwin.capacity.study import Row, RowResult, Study, expected_runs, row_search
from llmtwin.cluster.run import run_scenario
from llmtwin.errors import ConfigurationError
from llmtwin.report.progress import RunProgress
from llmtwin.report.summary import summarize
from llmtwin.scenario.loader import load_scenario

T = TypeVar("T")

Measure = Callable[[Probe], float]
"""A probe's SLO attainment (fraction of its requests within both SLOs)."""


def measure(probe: Probe) -> float:
    """Run the probe's scenario in this process; its SLO attainment (0 when nothing completed)."""
    s = load_scenario(probe.scenario, probe.overrides, probe.policy)
    prefix = f"policies.{probe.policy}."
    for ov in probe.overrides:
        if ov.startswith(prefix):
            key, _, value = ov[len(prefix) :].partition("=")
            if str(s.policy.params.get(key)) != value:
                raise ConfigurationError(
                    f"{s.name}: {probe.policy}.{key} = {value} is overridden by the scenario's "
                    "[policy.params] table; move that setting to [policies." + probe.policy + "]"
                )
    summary = summarize(run_scenario(s), s.slo)
    return summary.slo_attainment or 0.0


@dataclass(slots=True)
class _Active:
    search: Search[Any]
    batch: list[Probe]
    expected: int
    issued: int = 0


def run_searches(
    searches: Mapping[str, Search[T]],
    expected: Mapping[str, int],
    *,
    jobs: int,
    progress: RunProgress | None = None,
    describe: Callable[[str, T], str] | None = None,
    fn: Measure = measure,
) -> tuple[dict[str, T], int]:
    """Drive every search to its end; their results by name, and the number of runs made.
    ``jobs > 1`` runs probes on that many worker processes (``fn`` must then be picklable)."""
    results: dict[str, T] = {}
    active: dict[str, _Active] = {}
    cache: dict[Probe, float] = {}
    queued: deque[Probe] = deque()
    asked: set[Probe] = set()

    def advance(name: str, got: list[float] | None) -> None:
        a = active[name]
        while True:
            try:
                batch = next(a.search) if got is None else a.search.send(got)
            except StopIteration as stop:
                del active[name]
                results[name] = stop.value
                if progress is not None and describe is not None:
                    progress.note(describe(name, stop.value))
                return
            a.batch = batch
            for p in batch:
                if p not in asked:
                    asked.add(p)
                    queued.append(p)
                    a.issued += 1
            if not all(p in cache for p in batch):
                return
            got = [cache[p] for p in batch]

    def resume_ready() -> None:
        for name in [n for n, a in active.items() if all(p in cache for p in a.batch)]:
            advance(name, [cache[p] for p in active[name].batch])

    def report() -> None:
        if progress is not None:
            left = sum(max(0, a.expected - a.issued) for a in active.values()) + len(asked) - len(cache)
            progress.runs = len(cache) + left
            progress.done()

    for name, search in searches.items():
        active[name] = _Active(search, [], expected.get(name, 1))
        advance(name, None)
    if jobs <= 1:
        while queued:
            p = queued.popleft()
            cache[p] = fn(p)
            report()
            resume_ready()
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            running: dict[Future[float], Probe] = {}
            try:
                while queued or running:
                    while queued and len(running) < jobs:
                        p = queued.popleft()
                        running[pool.submit(fn, p)] = p
                    finished, _ = wait(running, return_when=FIRST_COMPLETED)
                    for fut in sorted(finished, key=lambda f: _order(running[f])):
                        cache[running.pop(fut)] = fut.result()
                    report()
                    resume_ready()
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
    if active:
        raise AssertionError(f"searches left waiting: {sorted(active)}")
    return results, len(cache)


def _order(p: Probe) -> tuple[str, ...]:
    return (p.policy, *p.overrides)


def run_study(
    study: Study, rows: Sequence[Row], *, jobs: int, progress: RunProgress | None = None
) -> tuple[list[RowResult], int]:
    """Every row's search, driven together; the rows' results in order and the runs made."""
    searches = {r.label: row_search(study, r) for r in rows}
    results, runs = run_searches(
        searches,
        {r.label: expected_runs(study, r) for r in rows},
        jobs=jobs,
        progress=progress,
        describe=lambda label, res: f"{label} done: {', '.join(_short(v) for v in res.values())}",
    )
    return [results[r.label] for r in rows], runs


def _short(v: float) -> str:
    return "none" if v != v else f"{v:.3g}"
