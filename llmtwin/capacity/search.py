"""The searches of a capacity study, as generators that ask for runs and get their verdicts.

A search yields a batch of :class:`Probe` (runs it needs, independent of each other) and is sent
back, in the same order, each run's SLO attainment (the fraction of requests within both SLOs);
a run *holds* when that reaches the target. It returns its answer.
Written this way, the searches know nothing of processes or progress: the driver
(``driver.py``) runs the probes of every search of a study in parallel and resumes each search
when its batch is done. Every search is deterministic given the verdicts.

* :func:`rate_search`: the highest arrival rate that holds (bracket by factors of ``grow``
  from ``start``, then bisect until the bracket is within ``tolerance`` of its top);
* :func:`size_search`: the smallest instance count that holds at a fixed rate (double or halve
  from ``start``, then bisect over the integers);
* :func:`lockstep`: several searches at once (one per seed), their batches merged;
* :func:`hill_climb`: the best setting of one ordered knob, moving from a start to whichever
  neighbour scores higher until neither does.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Probe:
    """One run: a scenario reference, a policy, and the overrides that make this point (seed,
    rate or instances, policy parameters, SLOs)."""

    scenario: str
    policy: str
    overrides: tuple[str, ...]


Search = Generator[list[Probe], list[float], T]
"""Yields the probes it needs next, is sent their SLO attainments, returns ``T``."""


@dataclass(frozen=True, slots=True)
class Bound:
    """The result of a one-dimensional search: the best value known to hold (``None``: none held
    down to the search's limit) and the nearest one known to fail (``None``: none failed up to
    the limit, so ``holds`` is only a bound)."""

    holds: float | None
    fails: float | None


def rate_search(
    probe: Callable[[float], Probe],
    target: float,
    start: float,
    tolerance: float,
    grow: float = 1.5,
    max_factor: float = 64.0,
) -> Search[Bound]:
    """Highest rate (req/s) whose probe holds, within ``tolerance`` (relative to the failing
    rate). Rates are rounded to 4 significant digits so that probes are easy to read and reuse."""
    lo: float | None = None
    hi: float | None = None
    r = _round(start)
    while lo is None or hi is None:
        (got,) = yield [probe(r)]
        if got >= target:
            lo = r
            if hi is None:
                if r >= start * max_factor:
                    return Bound(lo, None)
                r = _round(r * grow)
        else:
            hi = r
            if lo is None:
                if r <= start / max_factor:
                    return Bound(None, hi)
                r = _round(r / grow)
    while hi - lo > tolerance * hi:
        mid = _round((lo + hi) / 2)
        if mid in (lo, hi):
            break
        (got,) = yield [probe(mid)]
        if got >= target:
            lo = mid
        else:
            hi = mid
    return Bound(lo, hi)


def size_search(
    holds: Callable[[int], Search[bool]], start: int, step: int, smallest: int, largest: int
) -> Search[Bound]:
    """Smallest instance count (a multiple of ``step``, in ``[smallest, largest]``) at which
    ``holds(n)`` (itself a search: a fixed configuration is one probe, a tuned one several)."""
    ok_n: int | None = None
    bad_n: int | None = None
    n = max(smallest, _multiple(start, step))
    while ok_n is None or bad_n is None:
        ok = yield from holds(n)
        if ok:
            ok_n = n
            if bad_n is None:
                if n <= smallest:
                    return Bound(ok_n, None)
                n = max(smallest, _multiple(n // 2, step))
        else:
            bad_n = n
            if ok_n is None:
                if n >= largest:
                    return Bound(None, bad_n)
                n = min(largest, _multiple(2 * n, step))
    while ok_n - bad_n > step:
        mid = _multiple((ok_n + bad_n) // 2, step)
        if mid in (ok_n, bad_n):
            break
        ok = yield from holds(mid)
        if ok:
            ok_n = mid
        else:
            bad_n = mid
    return Bound(ok_n, bad_n)


def lockstep(searches: Sequence[Search[T]]) -> Search[list[T]]:
    """Run ``searches`` side by side (each batch is every unfinished search's next batch); return
    their results in order."""
    results: dict[int, T] = {}
    pending: dict[int, list[Probe]] = {}
    for i, s in enumerate(searches):
        try:
            pending[i] = next(s)
        except StopIteration as stop:
            results[i] = stop.value
    while pending:
        order = sorted(pending)
        verdicts = yield [p for i in order for p in pending[i]]
        at = 0
        for i in order:
            n = len(pending[i])
            mine, at = verdicts[at : at + n], at + n
            try:
                pending[i] = searches[i].send(mine)
            except StopIteration as stop:
                del pending[i]
                results[i] = stop.value
    return [results[i] for i in range(len(searches))]


def hill_climb(
    score: Callable[[int], Search[float]], values: Sequence[float], start: int
) -> Search[tuple[int, dict[int, float]]]:
    """The index into ``values`` (an ordered knob) with the highest score, climbing from
    ``start``: score the start and both neighbours, move to the better neighbour while it beats
    the current one. Ties keep the current setting. Returns the best index and every score."""
    scores: dict[int, float] = {}

    def ensure(idx: list[int]) -> Search[None]:
        todo = [i for i in idx if 0 <= i < len(values) and i not in scores]
        if todo:
            got = yield from lockstep([score(i) for i in todo])
            scores.update(zip(todo, got, strict=True))

    cur = start
    yield from ensure([cur - 1, cur, cur + 1])
    while True:
        nbrs = [i for i in (cur - 1, cur + 1) if i in scores]
        best = max(nbrs, key=lambda i: (scores[i], -abs(i - start)), default=cur)
        if scores.get(best, -math.inf) <= scores[cur]:
            return cur, scores
        cur = best
        yield from ensure([cur - 1, cur + 1])


def _round(x: float) -> float:
    return float(f"{x:.4g}")


def _multiple(n: int, step: int) -> int:
    return max(step, (n // step) * step)
