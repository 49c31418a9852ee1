"""Prometheus' evaluation rules (`increase()` with resets, `resets()`, `changes()`, the classic
`histogram_quantile()`) and the scrape-aligned window, so the direct path agrees with PromQL.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence

__all__ = [
    "aligned_window",
    "bucket_quantile",
    "changes",
    "counter_increase",
    "resets",
    "scrape_interval",
]


def counter_increase(values: Iterable[float]) -> float:
    """Last minus first, where a decrease (a reset) adds the post-reset value, as in
    Prometheus' `increase()` before extrapolation; never negative. NaN with < 2 samples."""
    total, pairs = 0.0, 0
    for previous, value in itertools.pairwise(values):
        total += value if value < previous else value - previous
        pairs += 1
    return float(total) if pairs else math.nan


def resets(values: Iterable[float]) -> int:
    """How many times the counter decreased (Prometheus `resets()`)."""
    return sum(1 for previous, value in itertools.pairwise(values) if value < previous)


def changes(values: Iterable[float]) -> int:
    """How many times the value changed (Prometheus `changes()`)."""
    return sum(1 for previous, value in itertools.pairwise(values) if value != previous)


def bucket_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float:
    """Prometheus' classic `histogram_quantile(q, ...)` over (upper bound, cumulative count).

    Sorted by bound; needs a +Inf bucket and two bounds; equal bounds are merged and counts
    forced monotonic. The value is interpolated linearly inside the bucket holding rank
    q·count (lower edge 0 for the first bucket); in the +Inf bucket it is the highest finite
    bound. NaN without observations.
    """
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    ordered = sorted(buckets)
    if not ordered or not math.isinf(ordered[-1][0]):
        return math.nan
    merged: list[list[float]] = []
    for bound, count in ordered:
        if merged and merged[-1][0] == bound:
            merged[-1][1] += count
        else:
            merged.append([bound, count])
    highest = merged[0][1]
    for bucket in merged[1:]:
        highest = max(highest, bucket[1])
        bucket[1] = highest
    if len(merged) < 2:
        return math.nan
    observations = merged[-1][1]
    if observations == 0:
        return math.nan
    rank = q * observations
    b = next(i for i, (_, count) in enumerate(merged) if i == len(merged) - 1 or count >= rank)
    if b == len(merged) - 1:
        return merged[-2][0]
    if b == 0 and merged[0][0] <= 0:
        return merged[0][0]
    start, end, count = 0.0, merged[b][0], merged[b][1]
    if b > 0:
        start = merged[b - 1][0]
        count -= merged[b - 1][1]
        rank -= merged[b - 1][1]
    return start + (end - start) * (rank / count)


def scrape_interval(times: Sequence[float]) -> float:
    """The typical gap between scrapes (median), NaN with fewer than two."""
    gaps = sorted(b - a for a, b in itertools.pairwise(times))
    return gaps[len(gaps) // 2] if gaps else math.nan


def aligned_window(
    times: Sequence[float], start_s: float, end_s: float
) -> tuple[float, float] | None:
    """The scrapes that bound a measure window: the last at or before `start_s` (else the
    first after it) and the last at or before `end_s`; None if they are not two scrapes.

    Counting between these two scrapes counts exactly the events they saw happen, with no
    extrapolation; `times` are the successful scrapes' times, ascending.
    """
    before = [t for t in times if t <= start_s]
    first = before[-1] if before else next((t for t in times if t > start_s), None)
    last = next((t for t in reversed(times) if t <= end_s), None)
    if first is None or last is None or last <= first:
        return None
    return first, last
