"""Pure statistics on raw per-request values: percentiles with counts and confidence intervals,
and bootstrap intervals for the ratio of two targets' percentiles.

Several quantiles of one sample share one sort (numpy's vectorised sort beats `np.partition`
with several ranks), so a stage's pooled inter-token latencies are sorted once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats as scipy_stats

__all__ = [
    "BOOTSTRAP_CAP",
    "BOOTSTRAP_RESAMPLES",
    "PERCENTILES",
    "Quantile",
    "RatioInterval",
    "min_samples",
    "quantile",
    "quantiles",
    "ratio_interval",
]

_Z95 = 1.959963984540054

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


def min_samples(q: float) -> int:
    """Smallest n for which the sample maximum bounds the q-quantile with 95% confidence."""
    if q <= 0.5:
        return 1
    return math.ceil(math.log(0.05) / math.log(q))


def _ranks(n: int, q: float) -> tuple[int, int, float, int, int]:
    """Order-statistic ranks for the linear-interpolated quantile and its 95% interval."""
    position = (n - 1) * q
    below = math.floor(position)
    above = min(below + 1, n - 1)
    half = _Z95 * math.sqrt(n * q * (1 - q))
    low = max(math.floor(n * q - half), 0)
    high = min(math.ceil(n * q + half), n - 1)
    return below, above, position - below, low, high


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
    ranks = {q: _ranks(n, q) for q in usable}
    ordered = np.sort(data) if usable else data
    out = []
    for q in qs:
        if q not in ranks:
            out.append(Quantile(q, n, None, None, None))
            continue
        below, above, frac, low, high = ranks[q]
        lo_value, hi_value = float(ordered[below]), float(ordered[above])
        value = lo_value + frac * (hi_value - lo_value)
        out.append(Quantile(q, n, value, float(ordered[low]), float(ordered[high])))
    return out


def quantile(values: npt.ArrayLike, q: float) -> Quantile:
    """One quantile with its count and interval; see `quantiles` for several at once."""
    return quantiles(values, [q])[0]


@dataclass(frozen=True)
class RatioInterval:
    """`statistic(a) / statistic(b)` with its 95% bootstrap interval, and the counts used."""

    ratio: float
    low: float
    high: float
    n_a: int
    n_b: int


def _subset(values: np.ndarray, cap: int, rng: np.random.Generator) -> np.ndarray:
    return values if len(values) <= cap else rng.choice(values, size=cap, replace=False)


def ratio_interval(
    a: npt.ArrayLike,
    b: npt.ArrayLike,
    q: float,
    *,
    seed: int = 0,
    n_resamples: int = BOOTSTRAP_RESAMPLES,
    cap: int = BOOTSTRAP_CAP,
) -> RatioInterval | None:
    """The ratio of the q-quantiles of two independent samples (NaN ignored), with the 95%
    percentile-bootstrap interval of `scipy.stats.bootstrap` resampling each side on its own.

    None when either side has fewer values than the quantile needs (`min_samples`) or a
    quantile is zero. The seed makes a report reproducible.
    """
    x = np.asarray(a, dtype=float)
    y = np.asarray(b, dtype=float)
    x, y = x[~np.isnan(x)], y[~np.isnan(y)]
    need = min_samples(q)
    if len(x) < need or len(y) < need:
        return None
    point_a, point_b = np.quantile(x, q), np.quantile(y, q)
    if point_a <= 0 or point_b <= 0:
        return None
    n_a, n_b = len(x), len(y)
    rng = np.random.default_rng(seed)
    x, y = _subset(x, cap, rng), _subset(y, cap, rng)

    def ratio(xs: np.ndarray, ys: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.quantile(xs, q, axis=axis) / np.quantile(ys, q, axis=axis)

    with np.errstate(divide="ignore", invalid="ignore"):
        result = scipy_stats.bootstrap(
            (x, y),
            ratio,
            paired=False,
            vectorized=True,
            n_resamples=n_resamples,
            batch=250,
            method="percentile",
            rng=rng,
        )
    low, high = result.confidence_interval
    return RatioInterval(float(point_a / point_b), float(low), float(high), n_a, n_b)
