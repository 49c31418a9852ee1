"""Pure statistics on raw per-request values: percentiles with counts and confidence intervals."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["Quantile", "min_samples", "quantile"]

_Z95 = 1.959963984540054


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


def quantile(values: npt.ArrayLike, q: float) -> Quantile:
    data = np.sort(np.asarray(values, dtype=float))
    data = data[~np.isnan(data)]
    n = int(data.size)
    if n == 0 or n < min_samples(q):
        return Quantile(q, n, None, None, None)
    value = float(np.quantile(data, q))
    half = _Z95 * math.sqrt(n * q * (1 - q))
    low = max(math.floor(n * q - half), 0)
    high = min(math.ceil(n * q + half), n - 1)
    return Quantile(q, n, value, float(data[low]), float(data[high]))
