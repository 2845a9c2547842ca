"""Capacity studies: the searches on synthetic attainments, the driver, and the command end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmtwin.capacity.driver import run_searches
from llmtwin.capacity.search import Bound, Probe, Search, hill_climb, lockstep, rate_search, size_search
from llmtwin.capacity.study import Knob, Row, Study, row_search
from llmtwin.cli.main import main


def probe_at(rate: float, seed: int = 0) -> Probe:
    return Probe("s", "p", (f"seed={seed}", f"workload.rate_rps={rate!r}"))


def rate_of(p: Probe) -> float:
    return float(p.overrides[1].split("=")[1])


def drive(search: Search[object], attainment: object) -> tuple[object, list[Probe]]:
    """Run ``search`` against ``attainment(probe) -> float``; its result and every probe asked."""
    asked: list[Probe] = []
    try:
        batch = next(search)
        while True:
            asked.extend(batch)
            batch = search.send([attainment(p) for p in batch])  # type: ignore[operator]
    except StopIteration as stop:
        return stop.value, asked


@pytest.mark.parametrize("knee", [0.7, 6.0, 37.0, 200.0])
def test_rate_search_brackets_the_knee_within_the_tolerance(knee: float) -> None:
    """Held up to ``knee``, failed above: the answer holds, a rate within 5% above it fails."""
    got, asked = drive(rate_search(probe_at, 0.9, 20.0, 0.05), lambda p: 1.0 if rate_of(p) <= knee else 0.5)
    assert isinstance(got, Bound)
    assert got.holds is not None
    assert got.fails is not None
    assert got.holds <= knee < got.fails
    assert got.fails - got.holds <= 0.05 * got.fails
    assert len(asked) <= (8 if 10 <= knee <= 40 else 14)


def test_rate_search_reports_bounds_at_its_limits() -> None:
    everything = drive(rate_search(probe_at, 0.9, 10.0, 0.05, max_factor=4.0), lambda p: 1.0)[0]
    nothing = drive(rate_search(probe_at, 0.9, 10.0, 0.05, max_factor=4.0), lambda p: 0.0)[0]
    assert isinstance(everything, Bound)
    assert everything.holds == pytest.approx(10 * 1.5**4, rel=1e-3)
    assert everything.fails is None
    assert isinstance(nothing, Bound)
    assert nothing.holds is None


def test_size_search_finds_the_fewest_instances_in_steps() -> None:
    """Holds from 7 instances up: with step 2 (pairs) the answer is 8, with step 1 it is 7."""
    calls: list[int] = []

    def holds(n: int) -> Search[bool]:
        calls.append(n)
        (got,) = yield [probe_at(float(n))]
        return got >= 0.9

    def att(p: Probe) -> float:
        return 1.0 if rate_of(p) >= 7 else 0.0

    for step, want in ((2, 8), (1, 7)):
        for start in (2, 8, 30):
            got = drive(size_search(holds, start, step, step, 64), att)[0]
            assert got == Bound(want, want - step)


def test_hill_climb_finds_the_peak_of_a_unimodal_score() -> None:
    values = list(range(1, 8))

    def score(i: int) -> Search[float]:
        (got,) = yield [probe_at(float(values[i]))]
        return got

    def peak_at_2(p: Probe) -> float:
        return -abs(rate_of(p) - 2.0)

    for start, tried in ((5, {0, 1, 2, 3, 4, 5, 6}), (1, {0, 1, 2}), (2, {0, 1, 2, 3})):
        got = drive(hill_climb(score, values, start), peak_at_2)[0]
        assert isinstance(got, tuple)
        best, scores = got
        assert values[best] == 2
        assert set(scores) == tried  # stops once both neighbours of the peak score lower


def test_lockstep_merges_batches_and_returns_in_order() -> None:
    searches = [rate_search(lambda r, s=s: probe_at(r, s), 0.9, 10.0, 0.05) for s in range(3)]
    knees = {0: 12.0, 1: 30.0, 2: 5.0}
    got = drive(lockstep(searches), lambda p: 1.0 if rate_of(p) <= knees[int(p.overrides[0][5:])] else 0.0)[0]
    assert isinstance(got, list)
    assert [b.holds <= knees[i] < b.fails for i, b in enumerate(got)] == [True] * 3


def synthetic(p: Probe) -> float:
    """Capacity 10 x prefill_instances - (prefill_instances - 3)^2 x 8: best split 3."""
    split = next((int(o.split("=")[1]) for o in p.overrides if "prefill_instances" in o), 1)
    cap = 10.0 * min(split, 3) - 8.0 * max(0, split - 3) ** 2
    return 1.0 if rate_of_probe(p) <= cap else 0.0


def rate_of_probe(p: Probe) -> float:
    return float(next(o for o in p.overrides if o.startswith("workload.rate_rps=")).split("=")[1])


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_tuned_row_climbs_to_the_best_setting_and_reuses_the_fixed_rows_runs(jobs: int) -> None:
    """Fixed at 5 prefill instances vs tuned: the tuned row finds 3; the probes of setting 5 run
    once for both rows; the answers do not depend on the worker count."""
    study = Study("s", (), 0.9, (0, 1), 8, 0.05, 12.0)
    knob = Knob("prefill_instances", tuple(range(1, 8)), 5)
    rows = [Row("disaggregated", False, knob), Row("disaggregated", True, knob)]
    results, runs = run_searches({r.label: row_search(study, r) for r in rows}, {}, jobs=jobs, fn=synthetic)
    fixed, tuned = results["disaggregated (fixed)"], results["disaggregated (tuned)"]
    assert fixed.settings == [5, 5]
    assert tuned.settings == [3, 3]
    assert all(b.holds is not None and 28.5 <= b.holds <= 30 for b in tuned.bounds)
    assert max(tuned.scores, key=lambda k: tuned.scores[k]) == 3
    solo, solo_runs = run_searches({"t": row_search(study, rows[1])}, {}, jobs=1, fn=synthetic)
    assert runs == solo_runs  # the fixed row's probes were all asked by the tuned row too
    assert solo["t"].bounds == tuned.bounds


@pytest.mark.slow
def test_capacity_command_on_a_small_scenario(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The command end to end on the demo (few requests, one seed, fixed settings; the tuned rows'
    search is tested above): every row, the JSON."""
    code = main(
        ["capacity", "demo", "--set", "workload.requests=40", "--seeds", "1", "--jobs", "1",
         "--tolerance", "0.3", "--no-tune", "--quiet", "--out", str(tmp_path)]
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    for label in ("colocated ", "colocated-chunked (fixed)", "disaggregated (fixed)", "accellm"):
        assert label in out
    doc = json.loads((tmp_path / "capacity.json").read_text())
    assert doc["question"] == "rate"
    assert [r["label"] for r in doc["rows"]][-1] == "accellm"
    assert all(r["holds"][0] is not None and r["holds"][0] > 0 for r in doc["rows"])
