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


class Pool:
    """Histograms on a common axis of values, for the quantile of any
    pooling of them where each histogram counts ``weights[i]`` times (as
    when runs are drawn with replacement)."""

    def __init__(self, histograms: list[Histogram]) -> None:
        self.values = sorted({v for h in histograms for v, _ in h})
        index = {v: i for i, v in enumerate(self.values)}
        # For each histogram, the requests at or below each value.
        self.cumulative: list[list[int]] = []
        for h in histograms:
            counts = [0] * len(self.values)
            for value, count in h:
                counts[index[value]] += count
            running, cumulative = 0, []
            for count in counts:
                running += count
                cumulative.append(running)
            self.cumulative.append(cumulative)

    def quantile(self, weights: list[int], q: float) -> float:
        """As ``pooled_quantile`` of the histograms, each ``weights[i]`` times."""
        chosen = [(w, c) for w, c in zip(weights, self.cumulative) if w and c]
        if not chosen or not self.values:
            return math.nan
        rank = math.ceil(q * sum(w * c[-1] for w, c in chosen))
        lo, hi = 0, len(self.values) - 1
        while lo < hi:  # the first value with at least ``rank`` requests at or below
            mid = (lo + hi) // 2
            if sum(w * c[mid] for w, c in chosen) >= rank:
                hi = mid
            else:
                lo = mid + 1
        return float(self.values[lo])


def drawn_interval(count: int, statistic, resamples: int = 2000, coverage: float = 0.95,
                   seed: int = 0) -> tuple[float, float]:
    """A bootstrap interval for ``statistic(weights)`` of ``count`` pairs of
    runs: the pairs drawn with replacement ``resamples`` times (``weights[i]``:
    how many times pair i was drawn), the central ``coverage`` of the
    statistic's values. A pair is what is drawn because its two runs share
    the machine's state of the moment. Seeded, so a report can be
    recomputed."""
    rng = random.Random(seed)
    draws = []
    for _ in range(resamples):
        weights = [0] * count
        for _ in range(count):
            weights[rng.randrange(count)] += 1
        draws.append(statistic(weights))
    draws.sort()
    cut = int(resamples * (1 - coverage) / 2)
    return draws[cut], draws[resamples - 1 - cut]


def pooled_difference(pairs: list[tuple[Histogram, Histogram]], q: float,
                      resamples: int = 2000, coverage: float = 0.95,
                      seed: int = 0) -> tuple[float, float, float]:
    """The ``q`` quantile of every request of the pairs' second histograms
    less that of their first ones (``pooled_quantile``), and a bootstrap
    interval for it (``drawn_interval``)."""
    first, second = Pool([a for a, _ in pairs]), Pool([b for _, b in pairs])

    def difference(weights: list[int]) -> float:
        return second.quantile(weights, q) - first.quantile(weights, q)

    lo, hi = drawn_interval(len(pairs), difference, resamples, coverage, seed)
    return difference([1] * len(pairs)), lo, hi
