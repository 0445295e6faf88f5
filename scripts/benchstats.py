"""The statistics of scripts/bench.py, without its servers: intervals for a
median and for the difference of two pooled latency quantiles.

A histogram is wrk's: a list of (latency in µs, requests), ascending.
"""

from __future__ import annotations

import math
import random
import statistics

Histogram = list[tuple[int, int]]


def median_interval(values: list[float], coverage: float = 0.95
                    ) -> tuple[float, float, float, float]:
    """The median of ``values`` and a distribution-free confidence interval
    for it from their order statistics: the k-th smallest and k-th largest
    contain the median with probability 1 - 2 P(Binomial(n, 1/2) < k).
    Returns (median, low, high, that probability); (median, -inf, inf, 0)
    when no k reaches ``coverage`` (fewer than 6 values at 95%)."""
    xs = sorted(values)
    n = len(xs)
    found = None
    for k in range(1, n // 2 + 1):
        achieved = 1 - 2 * sum(math.comb(n, j) for j in range(k)) / 2 ** n
        if achieved >= coverage:
            found = (k, achieved)
    if found is None:
        return statistics.median(xs), -math.inf, math.inf, 0.0
    k, achieved = found
    return statistics.median(xs), xs[k - 1], xs[n - k], achieved


def pooled_quantile(histograms: list[Histogram], q: float) -> float:
    """The ``q`` quantile (0 < q < 1) of every request of these histograms
    together: the smallest latency at or below which ceil(q N) of the N
    requests fall."""
    merged: dict[int, int] = {}
    for h in histograms:
        for value, count in h:
            merged[value] = merged.get(value, 0) + count
    rank = math.ceil(q * sum(merged.values()))
    seen = 0
    for value in sorted(merged):
        seen += merged[value]
        if seen >= rank:
            return float(value)
    return math.nan


def tail(histogram: Histogram, keep: int) -> Histogram:
    """``histogram`` with only its slowest ``keep`` requests (or a few more:
    whole bins) as they are, the others counted at 0 µs: every quantile
    that falls among the kept requests is unchanged, in this histogram
    alone or pooled with others."""
    out, kept = [], 0
    for value, count in reversed(histogram):
        if kept >= keep:
            break
        out.append((value, count))
        kept += count
    total = sum(c for _, c in histogram)
    rest = [(0, total - kept)] if total > kept else []
    return rest + out[::-1]


def pooled_difference(pairs: list[tuple[Histogram, Histogram]], q: float,
                      resamples: int = 2000, coverage: float = 0.95,
                      seed: int = 0) -> tuple[float, float, float]:
    """The ``q`` quantile of every request of the pairs' second histograms
    less that of their first ones (``pooled_quantile``), and a bootstrap
    interval for it: the pairs drawn with replacement ``resamples`` times,
    each draw's difference computed the same way, the central ``coverage``
    of them. A pair is what is drawn because its two runs share the
    machine's state of the moment. Seeded, so a report can be recomputed."""
    def difference(chosen: list[tuple[Histogram, Histogram]]) -> float:
        return (pooled_quantile([b for _, b in chosen], q)
                - pooled_quantile([a for a, _ in chosen], q))

    # Above the median, only the slowest requests decide the quantile: each
    # histogram keeps as many as could reach it in any draw (all of one
    # histogram drawn every time).
    most = max(sum(c for _, c in h) for pair in pairs for h in pair)
    keep = math.ceil((1 - q) * most * len(pairs)) + 1 if q >= 0.5 else most
    short = [(tail(a, keep), tail(b, keep)) for a, b in pairs]
    rng = random.Random(seed)
    draws = sorted(difference([short[rng.randrange(len(short))] for _ in short])
                   for _ in range(resamples))
    cut = int(resamples * (1 - coverage) / 2)
    return difference(pairs), draws[cut], draws[resamples - 1 - cut]
