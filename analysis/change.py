"""Intervals for the change of one figure between two runs (pure): the statistics of the gate.

Each function compares a base and a new sample and returns the change with a 95% interval, on
one scale: a relative change (new ÷ base − 1) for latencies and throughputs, a difference of
proportions for the error rate.

- A latency percentile's ratio (`percentile_change`): with at most `BOOTSTRAP_CAP` values per
  side, SciPy's bootstrap of each side (`analysis.stats.ratio_interval`, as the pairs of
  targets use); above it — a nightly run has thousands, a big one millions — each side's
  distribution-free order-statistic interval, q ± 1.96·√(q(1−q)/n), combined on the log
  scale: log(new/base) ± 1.96·√(se_base² + se_new²), where se is the interval's log width
  ÷ 3.92. No resampling, all values used, O(n) per side (`np.quantile` selects, it does not
  sort). Pooled inter-token gaps are not independent (a request's gaps share its batch), so
  their `n` is the number of requests they came from, not the number of gaps.
- A throughput's ratio (`throughput_change`): batch means — the stage's measured window cut
  into equal time bins, each bin's rate a sample — then SciPy's two-sample bootstrap of the
  ratio of the mean rates; the mean of the bins is exactly the stage's figure.
- The error rate's difference (`error_rate_change`): Newcombe's hybrid score interval from
  each side's Wilson interval (SciPy's `binomtest(...).proportion_ci`).

tests/analysis/test_change.py checks the coverage of each against known distributions.
"""

from __future__ import annotations

import math
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats as scipy_stats

from analysis.stats import BOOTSTRAP_CAP, min_samples, ratio_interval
from loadtest.order_stats import Z95

__all__ = [
    "MIN_BINS",
    "THROUGHPUT_BINS",
    "Change",
    "error_rate_change",
    "percentile_change",
    "percentile_changes",
    "samples_needed",
    "seed_of",
    "throughput_change",
    "time_bins",
]

THROUGHPUT_BINS = 20
MIN_BINS = 4
_PER_BIN = 5  # fewer bins when a stage completed fewer than 5 requests per bin


@dataclass(frozen=True)
class Change:
    """`value` (new ÷ base − 1, or new − base for a rate of errors) within [`low`, `high`];
    `method` says how the interval was found; `n_base`/`n_new` what it rests on."""

    value: float
    low: float
    high: float
    n_base: int
    n_new: int
    method: str


def seed_of(*parts: object) -> int:
    """A reproducible seed per compared figure (the same runs give the same intervals)."""
    return zlib.crc32("|".join(str(p) for p in parts).encode())


def _finite(values: npt.ArrayLike) -> np.ndarray:
    data = np.asarray(values, dtype=float)
    return data[np.isfinite(data)]


def _log_sides(
    data: np.ndarray, qs: Sequence[float], n_eff: int
) -> list[tuple[float, float] | None]:
    """For each q: (log of the q-quantile, its standard error) from the order-statistic
    interval, all from one selection pass over `data`."""
    halves = [Z95 * math.sqrt(q * (1 - q) / n_eff) for q in qs]
    positions = [
        p for q, h in zip(qs, halves, strict=True) for p in (q, max(q - h, 0.0), min(q + h, 1.0))
    ]
    found = np.quantile(data, positions).reshape(-1, 3)
    out: list[tuple[float, float] | None] = []
    for value, low, high in found:
        ok = low > 0 and value > 0
        out.append((math.log(value), (math.log(high) - math.log(low)) / (2 * Z95)) if ok else None)
    return out


def percentile_changes(
    base: npt.ArrayLike,
    new: npt.ArrayLike,
    qs: Sequence[float],
    *,
    n_base: int | None = None,
    n_new: int | None = None,
    seed: int = 0,
) -> list[Change | str]:
    """Each q-quantile's relative change from `base` to `new`, or why it cannot be given.

    `n_base`/`n_new` are the effective sample sizes when the values are not independent
    (pooled inter-token gaps: the requests they came from); the values' counts otherwise.
    """
    a, b = _finite(base), _finite(new)
    n_a = len(a) if n_base is None else min(n_base, len(a))
    n_b = len(b) if n_new is None else min(n_new, len(b))
    effective = n_base is not None or n_new is not None
    resample = not effective and max(n_a, n_b) <= BOOTSTRAP_CAP
    usable = [q for q in qs if min(n_a, n_b) >= min_samples(q)]
    sides = {}
    if usable and not resample:
        sides = dict(
            zip(
                usable,
                zip(_log_sides(a, usable, n_a), _log_sides(b, usable, n_b), strict=True),
                strict=True,
            )
        )
    out: list[Change | str] = []
    for q in qs:
        if q not in usable:
            need = min_samples(q)
            out.append(f"too few samples (base {n_a}, new {n_b}; p{100 * q:g} needs {need})")
        elif resample:
            found = ratio_interval(b, a, q, seed=seed + int(1000 * q))  # new ÷ base
            out.append(
                "a percentile is zero"
                if found is None
                else Change(found.ratio - 1, found.low - 1, found.high - 1, n_a, n_b, "bootstrap")
            )
        else:
            side_a, side_b = sides[q]
            if side_a is None or side_b is None:
                out.append("a percentile is zero")
                continue
            (log_a, se_a), (log_b, se_b) = side_a, side_b
            centre, spread = log_b - log_a, Z95 * math.hypot(se_a, se_b)
            low, high = math.expm1(centre - spread), math.expm1(centre + spread)
            out.append(Change(math.expm1(centre), low, high, n_a, n_b, "order statistics"))
    return out


def percentile_change(
    base: npt.ArrayLike,
    new: npt.ArrayLike,
    q: float,
    *,
    n_base: int | None = None,
    n_new: int | None = None,
    seed: int = 0,
) -> Change | str:
    """One quantile's change: see `percentile_changes`."""
    return percentile_changes(base, new, [q], n_base=n_base, n_new=n_new, seed=seed)[0]


def samples_needed(
    change: float, dispersion: float, *, q: float = 0.95, power: float = 0.80
) -> int:
    """Requests per run for `percentile_change` to tell a true `change` (0.05 = 5%) of the
    q-quantile from none, with `power`, at the 5% level, when the latency's logarithm has
    spread `dispersion` (lognormal): the order-statistic standard error of the log quantile,
    s·√(q(1−q)/n)/φ(z_q) per run, √2 times that for the ratio (profiles/nightly.yaml)."""
    z_q = float(scipy_stats.norm.ppf(q))
    per_run = math.sqrt(q * (1 - q)) / float(scipy_stats.norm.pdf(z_q))
    z_power = float(scipy_stats.norm.ppf(power))
    root = (Z95 + z_power) * math.sqrt(2) * per_run * dispersion / math.log1p(change)
    return math.ceil(root**2)


def time_bins(
    scheduled_ns: np.ndarray, weights: np.ndarray, start_ns: int, end_ns: int, bins: int
) -> np.ndarray:
    """Per-second rate of `weights` in each of `bins` equal parts of [start_ns, end_ns), by
    when each request was scheduled; their mean is the total over the window's length."""
    width_ns = (end_ns - start_ns) / bins
    where = np.clip(((scheduled_ns - start_ns) // width_ns).astype(np.int64), 0, bins - 1)
    return np.bincount(where, weights=weights, minlength=bins) / (width_ns / 1e9)


def bin_count(completed: int) -> int:
    """How many time bins a stage's window is cut into: `THROUGHPUT_BINS`, fewer for a stage
    with few completed requests (at least `_PER_BIN` per bin on average)."""
    return max(min(THROUGHPUT_BINS, completed // _PER_BIN), 0)


def throughput_change(
    base_bins: np.ndarray, new_bins: np.ndarray, *, seed: int = 0
) -> Change | str:
    """The relative change of the mean rate from `base_bins` to `new_bins` (`time_bins`)."""
    if len(base_bins) < MIN_BINS or len(new_bins) < MIN_BINS:
        return f"too few completed requests to split the window (fewer than {MIN_BINS} bins)"
    mean_a, mean_b = float(base_bins.mean()), float(new_bins.mean())
    if mean_a <= 0:
        return "nothing completed in the base run"
    if np.ptp(base_bins) == 0 and np.ptp(new_bins) == 0:
        value = mean_b / mean_a - 1
        return Change(value, value, value, len(base_bins), len(new_bins), "batch means")

    def ratio(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.mean(b, axis=axis) / np.mean(a, axis=axis)

    low, high = np.nan, np.nan
    for method in ("BCa", "percentile"):  # BCa is undefined when every resample is the same
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            result = scipy_stats.bootstrap(
                (base_bins, new_bins),
                ratio,
                vectorized=True,
                paired=False,
                n_resamples=2000,
                method=method,
                rng=np.random.default_rng(seed),
            )
        low, high = result.confidence_interval
        if np.isfinite(low) and np.isfinite(high):
            break
    if not (np.isfinite(low) and np.isfinite(high)):
        return "no interval: the bootstrap found no spread to measure"
    return Change(
        mean_b / mean_a - 1,
        float(low) - 1,
        float(high) - 1,
        len(base_bins),
        len(new_bins),
        "batch means bootstrap",
    )


def _wilson(errors: int, requests: int) -> tuple[float, float, float]:
    ci = scipy_stats.binomtest(errors, requests).proportion_ci(0.95, method="wilson")
    return errors / requests, float(ci.low), float(ci.high)


def error_rate_change(
    base_errors: int, base_requests: int, new_errors: int, new_requests: int
) -> Change | str:
    """The error rate's difference (new − base, a proportion) with Newcombe's interval."""
    if base_requests == 0 or new_requests == 0:
        return "no request in one of the runs"
    p1, l1, u1 = _wilson(base_errors, base_requests)
    p2, l2, u2 = _wilson(new_errors, new_requests)
    diff = p2 - p1
    low = diff - math.hypot(p2 - l2, u1 - p1)
    high = diff + math.hypot(u2 - p2, p1 - l1)
    return Change(diff, low, high, base_requests, new_requests, "Newcombe (Wilson)")
