"""Seeded open-loop arrival schedules: when each request is *meant* to be sent.

Pure functions of (rate, window, process, seed): the same seed gives the same schedule, and
latency in open loop is timed from these instants, not from when the generator got round to
sending (coordinated omission, MEASUREMENT.md).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from loadtest.config import ArrivalProcess
from loadtest.seeds import hash_seed

__all__ = ["arrival_times", "hash_seed", "iter_arrivals"]

_MAX_BLOCK = 1 << 16


def arrival_times(
    rate_per_s: float,
    start_s: float,
    end_s: float,
    process: ArrivalProcess,
    seed: int | str,
    burstiness: float = 1.0,
) -> list[float]:
    """Arrival instants in [start_s, end_s) for a mean rate of `rate_per_s`, as a list
    (see `iter_arrivals`)."""
    return list(iter_arrivals(rate_per_s, start_s, end_s, process, seed, burstiness))


def iter_arrivals(
    rate_per_s: float,
    start_s: float,
    end_s: float,
    process: ArrivalProcess,
    seed: int | str,
    burstiness: float = 1.0,
) -> Iterator[float]:
    """Arrival instants in [start_s, end_s) for a mean rate of `rate_per_s`, drawn lazily
    (memory does not grow with the rate).

    `constant`: evenly spaced; `poisson`: exponential gaps; `gamma`: gamma gaps with shape
    `burstiness` (1 is Poisson, below 1 burstier, above 1 more regular), mean 1/rate.
    """
    if rate_per_s <= 0 or end_s <= start_s:
        return
    span = end_s - start_s
    if process == "constant":
        gap = 1.0 / rate_per_s
        for i in range(int(np.ceil(span * rate_per_s - 1e-9))):
            yield start_s + i * gap
        return
    rng = np.random.default_rng(abs(hash_seed(seed)))
    expected = span * rate_per_s
    count = int(expected + 6 * np.sqrt(expected) / min(burstiness, 1.0) + 16)
    count = min(count, _MAX_BLOCK)  # the same draws as one block below this size
    shape = 1.0 if process == "poisson" else burstiness
    t = start_s
    while True:
        gaps = rng.gamma(shape, 1.0 / (rate_per_s * shape), size=count)
        for gap in gaps:
            t += float(gap)
            if t >= end_s:
                return
            yield t
