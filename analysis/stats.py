"""Pure statistics on raw per-request values: percentiles with counts and confidence intervals,
and bootstrap intervals for the ratio of two targets' percentiles.

Several quantiles of one sample share one sort (numpy's vectorised sort beats `np.partition`
with several ranks on small samples); from `_SELECT_FROM` values on (a big stage's pooled
inter-token latencies) one `np.partition` at every needed rank is ~4x faster than sorting.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats as scipy_stats

from loadtest.order_stats import min_samples, ranks

__all__ = [
    "BOOTSTRAP_CAP",
    "BOOTSTRAP_RESAMPLES",
    "PERCENTILES",
    "Bootstrap",
    "Quantile",
    "RatioInterval",
    "bootstrap_quantile",
    "min_samples",
    "quantile",
    "quantiles",
    "ratio_interval",
    "ratio_of",
]

_SELECT_FROM = 200_000

PERCENTILES = (50, 90, 95, 99)
"""The percentiles every latency is reported at by default (MEASUREMENT.md)."""

BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_CAP = 1000
"""At most this many values per side enter a bootstrap (a seeded random subset beyond it), so
an interval costs milliseconds on a million-record run; the interval is then conservative."""


@dataclass(frozen=True)
class Quantile:
    """A sample quantile with the count it rests on and an order-statistic 95% interval.

    `value` is None when there are fewer samples than the quantile needs (MEASUREMENT.md:
    59 for p95, 299 for p99), so an unsupported tail is never printed as a number.
    """

    q: float
    n: int
    value: float | None
    ci_low: float | None
    ci_high: float | None


def quantiles(values: npt.ArrayLike, qs: Sequence[float]) -> list[Quantile]:
    """Each q-quantile of `values` (NaN ignored), as `numpy.quantile`'s linear method gives it.

    The interval is the distribution-free one: the order statistics at n·q ± 1.96·√(n·q·(1−q)).
    """
    data = np.asarray(values, dtype=float)
    if data.ndim != 1:
        data = data.ravel()
    nan = np.isnan(data)
    if nan.any():
        data = data[~nan]
    n = int(data.size)
    usable = [q for q in qs if n and n >= min_samples(q)]
    found = {q: ranks(n, q) for q in usable}
    if not usable:
        ordered = data
    elif n >= _SELECT_FROM:  # a stage's pooled gaps: select the ranks, do not sort them all
        needed = {k for r in found.values() for k in (r.below, r.above, r.low, r.high)}
        ordered = np.partition(data, sorted(needed))
    else:
        ordered = np.sort(data)
    out = []
    for q in qs:
        if q not in found:
            out.append(Quantile(q, n, None, None, None))
            continue
        r = found[q]
        lo_value, hi_value = float(ordered[r.below]), float(ordered[r.above])
        value = lo_value + r.fraction * (hi_value - lo_value)
        out.append(Quantile(q, n, value, float(ordered[r.low]), float(ordered[r.high])))
    return out


def quantile(values: npt.ArrayLike, q: float) -> Quantile:
    """One quantile with its count and interval; see `quantiles` for several at once."""
    return quantiles(values, [q])[0]


@dataclass(frozen=True)
class Bootstrap:
    """One sample's q-quantile and the bootstrap distribution of it (`scipy.stats.bootstrap`,
    `BOOTSTRAP_RESAMPLES` resamples of at most `BOOTSTRAP_CAP` values), for ratios."""

    value: float
    n: int
    replicates: np.ndarray


def _subset(values: np.ndarray, cap: int, rng: np.random.Generator) -> np.ndarray:
    return values if len(values) <= cap else rng.choice(values, size=cap, replace=False)


def bootstrap_quantile(
    values: npt.ArrayLike,
    q: float,
    *,
    seed: int = 0,
    n_resamples: int = BOOTSTRAP_RESAMPLES,
    cap: int = BOOTSTRAP_CAP,
) -> Bootstrap | None:
    """The q-quantile of `values` (NaN ignored) with SciPy's bootstrap distribution of it;
    None below the samples the quantile needs (`min_samples`) or when it is not positive.
    The seed makes a report reproducible; give each sample its own."""
    data = np.asarray(values, dtype=float)
    data = data[~np.isnan(data)]
    if len(data) < min_samples(q):
        return None
    value = float(np.quantile(data, q))
    if value <= 0:
        return None
    rng = np.random.default_rng(seed)

    def statistic(sample: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.quantile(sample, q, axis=axis)

    result = scipy_stats.bootstrap(
        (_subset(data, cap, rng),),
        statistic,
        vectorized=True,
        n_resamples=n_resamples,
        batch=250,
        method="percentile",
        rng=rng,
    )
    return Bootstrap(value, len(data), np.asarray(result.bootstrap_distribution, dtype=float))


@dataclass(frozen=True)
class RatioInterval:
    """`quantile(a) / quantile(b)` with its 95% bootstrap interval, and the counts used."""

    ratio: float
    low: float
    high: float
    n_a: int
    n_b: int


def ratio_of(a: Bootstrap, b: Bootstrap) -> RatioInterval:
    """The ratio of two independent samples' quantiles with its 95% percentile interval.

    Replicate i of each side comes from its own independent resample, so the i-th ratios
    are exactly the replicates of the two-sample bootstrap that resamples each side on its
    own (`scipy.stats.bootstrap(..., paired=False)`); computing each side once lets every
    pair of targets share them.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = a.replicates / b.replicates
    ratios = ratios[np.isfinite(ratios)]
    low, high = np.percentile(ratios, [2.5, 97.5]) if len(ratios) else (np.nan, np.nan)
    return RatioInterval(a.value / b.value, float(low), float(high), a.n, b.n)


def ratio_interval(
    a: npt.ArrayLike, b: npt.ArrayLike, q: float, *, seed: int = 0
) -> RatioInterval | None:
    """`ratio_of` two samples' q-quantiles (seeded), or None when either is unsupported."""
    left = bootstrap_quantile(a, q, seed=seed)
    right = bootstrap_quantile(b, q, seed=seed + 1)
    return ratio_of(left, right) if left is not None and right is not None else None
