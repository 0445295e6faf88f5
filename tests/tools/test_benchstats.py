"""The statistics behind make bench's latency verdicts (scripts/benchstats.py)."""

import math
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from benchstats import (  # noqa: E402
    Pool, drawn_interval, median_interval, pooled_difference, pooled_quantile,
)


def histogram(latencies):
    counts = {}
    for v in latencies:
        counts[v] = counts.get(v, 0) + 1
    return sorted(counts.items())


def quantile_of_list(latencies, q):
    xs = sorted(latencies)
    return float(xs[math.ceil(q * len(xs)) - 1])


def runs(rng, n, count, shift=0, slow_every=0):
    """``n`` runs of ``count`` latencies around 150 µs, ``shift`` µs later;
    every ``slow_every``-th run with 3% of its requests paused by
    milliseconds (the machine, not the filter)."""
    out = []
    for i in range(n):
        xs = [int(rng.gauss(150, 15)) + shift for _ in range(count)]
        if slow_every and i % slow_every == 0:
            for j in rng.sample(range(count), count * 3 // 100):
                xs[j] += rng.randrange(500, 5000)
        out.append(xs)
    return out


def test_pooled_quantile_is_the_quantile_of_every_request_together():
    rng = random.Random(1)
    lists = [[rng.randrange(100, 3000) for _ in range(rng.randrange(50, 400))]
             for _ in range(7)]
    everything = [x for xs in lists for x in xs]
    for q in (0.01, 0.5, 0.9, 0.99, 0.999):
        assert pooled_quantile([histogram(xs) for xs in lists], q) == \
            quantile_of_list(everything, q)


def test_a_pool_gives_the_quantile_of_the_histograms_each_counted_its_weight_times():
    rng = random.Random(2)
    lists = [[rng.randrange(100, 3000) for _ in range(rng.randrange(50, 400))]
             for _ in range(5)]
    pool = Pool([histogram(xs) for xs in lists])
    for weights in ([1, 1, 1, 1, 1], [0, 3, 1, 0, 1], [5, 0, 0, 0, 0], [0, 0, 2, 2, 1]):
        repeated = [xs for w, xs in zip(weights, lists) for _ in range(w)]
        for q in (0.01, 0.5, 0.9, 0.99, 0.999):
            assert pool.quantile(weights, q) == \
                pooled_quantile([histogram(xs) for xs in repeated], q)
    assert math.isnan(pool.quantile([0, 0, 0, 0, 0], 0.5))


def test_a_drawn_interval_draws_the_pairs_with_replacement():
    seen = []
    lo, hi = drawn_interval(4, lambda w: seen.append(w) or w[0], resamples=400)
    assert all(sum(w) == 4 and len(w) == 4 for w in seen)
    # Pair 0 drawn 0 to 4 times; in 95% of the draws, 0 to 3 times.
    assert (lo, hi) == (0, 3)
    assert len({tuple(w) for w in seen}) > 20


def test_a_shift_of_every_request_is_found_with_a_narrow_interval():
    rng = random.Random(3)
    a = runs(rng, 12, 2000, slow_every=4)
    b = [[x + 30 for x in xs] for xs in a]
    pairs = [(histogram(x), histogram(y)) for x, y in zip(a, b)]
    for q in (0.5, 0.9, 0.99):
        added, lo, hi = pooled_difference(pairs, q, resamples=300)
        assert (added, lo, hi) == (30, 30, 30)


def test_pauses_of_the_machine_widen_the_interval_but_it_holds_no_difference():
    rng = random.Random(4)
    a = runs(rng, 12, 2000, slow_every=3)
    b = runs(rng, 12, 2000, slow_every=3)
    pairs = [(histogram(x), histogram(y)) for x, y in zip(a, b)]
    _, lo, hi = pooled_difference(pairs, 0.5, resamples=300)
    assert lo <= 0 <= hi and hi - lo < 10
    _, lo99, hi99 = pooled_difference(pairs, 0.99, resamples=300)
    assert lo99 <= 0 <= hi99 and hi99 - lo99 > 100


def test_a_real_difference_is_not_hidden_by_the_pooling():
    rng = random.Random(5)
    a = runs(rng, 12, 2000)
    b = runs(rng, 12, 2000, shift=80)
    pairs = [(histogram(x), histogram(y)) for x, y in zip(a, b)]
    added, lo, hi = pooled_difference(pairs, 0.99, resamples=300)
    assert 60 < lo <= added <= hi < 100


def test_the_median_interval_comes_from_order_statistics():
    median, lo, hi, cover = median_interval(list(range(12)))
    assert (median, lo, hi) == (5.5, 2, 9)  # k = 3 of 12
    assert round(cover, 3) == 0.961
    assert median_interval([1, 2, 3, 4, 5]) == (3, -math.inf, math.inf, 0.0)
