"""Order statistics of a sample's quantile, shared by the analysis and the generator.

The analysis reports a quantile with the distribution-free 95% interval between two order
statistics (`analysis.stats`); the generator's master decides from running counts whether a
stage's quantile already lies wholly below or above an SLO limit (`loadtest.search`), with the
same ranks, so that both read a stage alike. Pure arithmetic: no numpy, cheap to import in
every generator process.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Z95", "Ranks", "min_samples", "ranks"]

Z95 = 1.959963984540054  # the standard normal's 97.5% quantile: two-sided 95%


def min_samples(q: float) -> int:
    """Smallest n for which the sample maximum bounds the q-quantile with 95% confidence."""
    if q <= 0.5:
        return 1
    return math.ceil(math.log(0.05) / math.log(q))


@dataclass(frozen=True)
class Ranks:
    """0-based ranks in the sorted sample: the linear-interpolated quantile lies `fraction`
    of the way from `below` to `above`; its 95% interval runs from `low` to `high`."""

    below: int
    above: int
    fraction: float
    low: int
    high: int


def ranks(n: int, q: float, z: float | None = None) -> Ranks:
    """The ranks for n ≥ 1 values: the interval is at n·q ± 1.96·√(n·q·(1−q)), clipped (or
    ± z·√… for another confidence)."""
    position = (n - 1) * q
    below = math.floor(position)
    above = min(below + 1, n - 1)
    half = (Z95 if z is None else z) * math.sqrt(n * q * (1 - q))
    low = max(math.floor(n * q - half), 0)
    high = min(math.ceil(n * q + half), n - 1)
    return Ranks(below, above, position - below, low, high)
