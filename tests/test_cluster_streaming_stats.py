"""The numeric building blocks of streamed results: exact sums, per-request gap statistics,
pooled quantiles and plot bins give the same answer however the data is cut into chunks."""

from __future__ import annotations

import math
import random
from fractions import Fraction

import numpy as np
import pytest

from llmtwin.cluster.exact_sum import ExactSum
from llmtwin.cluster.in_flight import InFlight
from llmtwin.cluster.quantiles import SKETCH_BITS, StreamQuantiles
from llmtwin.cluster.tbt_stats import gap_stats
from llmtwin.cluster.timebins import MaxBins, OccupancyBins


def chunks(values: list[float], rng: random.Random) -> list[list[float]]:
    out, i = [], 0
    while i < len(values):
        j = i + rng.randint(1, 40)
        out.append(values[i:j])
        i = j
    return out


def test_exact_sum_is_the_rounded_exact_sum_in_any_order_and_chunking() -> None:
    rng = random.Random(3)
    for _ in range(200):
        xs = [
            rng.choice([1, -1]) * rng.random() * 10 ** rng.randint(-300, 300)
            for _ in range(rng.randint(1, 300))
        ]
        xs += [5e-324, -1.5e-323, 1.7e308, -1.7e308]
        rng.shuffle(xs)
        s = ExactSum()
        for c in chunks(xs, rng):
            s.add(np.asarray(c))
        assert s.value == float(sum(Fraction(x) for x in xs)) == math.fsum(xs)


def test_exact_sum_refuses_infinities() -> None:
    with pytest.raises(ValueError, match="finite"):
        ExactSum().add([math.inf])


def test_gap_stats_equal_numpy_request_by_request() -> None:
    """Mean, p90, p99 and max of each request's gaps are bit-identical to numpy on that request."""
    rng = np.random.default_rng(5)
    counts = np.concatenate([np.arange(0, 12), rng.integers(1, 600, size=400)]).astype(np.int64)
    rng.shuffle(counts)
    times = np.concatenate(
        [
            np.cumsum(rng.exponential(0.02, size=c) * rng.choice([1e-3, 1.0, 30.0], size=c)) + 100
            for c in counts
        ]
    )
    st = gap_stats(times, counts)
    ends = np.cumsum(counts)
    pooled = []
    for i, c in enumerate(counts.tolist()):
        g = np.diff(times[ends[i] - c : ends[i]])
        pooled.append(g)
        if g.size == 0:
            assert all(np.isnan(x[i]) for x in (st.mean, st.p90, st.p99, st.max))
            continue
        p90, p99 = np.percentile(g, (90.0, 99.0))
        assert (st.mean[i], st.p90[i], st.p99[i], st.max[i]) == (g.mean(), p90, p99, g.max())
        assert st.total[i] == g.sum()
    assert np.array_equal(st.pooled, np.concatenate(pooled))


def test_exact_quantiles_are_numpys_and_the_sketch_stays_within_its_bound() -> None:
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.exponential(0.02, size=30_000), rng.lognormal(-3, 2, size=20_000), [1e-9, 5e3]])
    exact, sketch = StreamQuantiles(exact=True), StreamQuantiles(exact=False)
    for c in np.array_split(x, 17):
        exact.add(c)
        sketch.add(c)
    qs = (0.0, 1.0, 50.0, 90.0, 99.0, 99.9, 100.0)
    assert exact.percentiles(qs) == [float(v) for v in np.percentile(x, qs)]
    bound = 2.0 ** -(SKETCH_BITS + 1)
    for got, want in zip(sketch.percentiles(qs), exact.percentiles(qs), strict=True):
        assert abs(got - want) <= bound * want
    assert (sketch.count, sketch.min, sketch.max) == (x.size, x.min(), x.max())


def test_the_sketch_is_chosen_only_beyond_the_exact_limit() -> None:
    assert StreamQuantiles.for_count(10).exact
    assert not StreamQuantiles.for_count(1 << 30).exact


def test_max_bins_depend_only_on_the_points() -> None:
    """Points added in chunks (the bins merging as time grows) or at once: the same envelope."""
    rng = np.random.default_rng(2)
    t = np.sort(rng.uniform(0, 500, size=5000))
    v = rng.uniform(0, 1, size=(2, 5000))
    once = MaxBins(2, bins=64)
    once.add(t, v)
    chunked = MaxBins(2, bins=64)
    for part in np.array_split(np.arange(5000), 23):
        chunked.add(t[part], v[:, part])
    assert np.array_equal(once.first_t, chunked.first_t)
    assert np.array_equal(once.peak, chunked.peak)
    first, peaks = once.points()
    assert first[0] == t[0]
    assert peaks[0].max() == v[0].max()


def test_occupancy_stretches_merge_repeats_and_end_at_the_run_end() -> None:
    bins = OccupancyBins(bins=64)
    bins.add(np.array([0.0, 1.0, 1.5]), np.array([1.0, 1.5, 2.0]), ["prefill", "decode", "decode"])
    bins.add(np.array([2.0]), np.array([2.4]), ["prefill"])
    segs = bins.stretches(2.4)
    assert [(t, r) for t, _, r in segs] == [(0.0, "prefill"), (1.0, "decode"), (2.0, "prefill")]
    assert [d for _, d, _ in segs] == pytest.approx([1.0, 1.0, 0.4])


def test_in_flight_orders_pieces_uses_and_moves_as_documented() -> None:
    """Pieces by first token time then instance; instances by first use then id; moved bytes
    summed left to right by instance, then in each instance's log order."""
    f = InFlight(3)
    f.add_pieces(np.array([1, 0]), 2, np.array([2, 1]), np.array([5.0, 6.0, 1.0]))
    f.add_uses(np.array([1, 1]), 2, np.array([4.0, 3.5]))
    f.add_moves(np.array([1, 1]), 2, np.array([0.1, 0.2]))
    f.add_pieces(np.array([1]), 0, np.array([2]), np.array([3.0, 4.0]))
    f.add_uses(np.array([1]), 0, np.array([2.0]))
    f.add_moves(np.array([1]), 0, np.array([1e16]))
    done = f.take(np.array([1]))
    assert done.times.tolist() == [3.0, 4.0, 5.0, 6.0]
    assert done.counts.tolist() == [4]
    assert done.instances.tolist() == [[0, 2]]
    assert done.moved.tolist() == [(1e16 + 0.1) + 0.2]
    rest = f.take(np.array([0, 2]))
    assert rest.counts.tolist() == [1, 0]
    assert rest.times.tolist() == [1.0]
