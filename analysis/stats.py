"""Pure statistics on raw per-request values: percentiles with counts and confidence intervals.

Several quantiles of one sample share one sort (numpy's vectorised sort beats `np.partition`
with several ranks), so a stage's pooled inter-token latencies are sorted once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["PERCENTILES", "Quantile", "min_samples", "quantile", "quantiles"]

_Z95 = 1.959963984540054

PERCENTILES = (50, 90, 95, 99)
"""The percentiles every latency is reported at (MEASUREMENT.md)."""


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
