"""The gate's intervals cover the true change about 95% of the time, on known distributions."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.change import (
    Change,
    bin_count,
    error_rate_change,
    percentile_change,
    throughput_change,
    time_bins,
)
from analysis.stats import BOOTSTRAP_CAP

# Seeded draws: the figures are reproducible. With 100 trials at a true 95%, fewer than 88
# covered happens with probability < 1%; the bootstrap cases cost ~60 ms a trial, so 100.


def _coverage(draw, truth: float, trials: int) -> tuple[float, set[str]]:
    hits, methods = 0, set()
    for trial in range(trials):
        found = draw(trial)
        assert isinstance(found, Change), found
        hits += found.low <= truth <= found.high
        methods.add(found.method)
    return hits / trials, methods


@pytest.mark.parametrize(
    ("n", "q", "method", "trials"),
    [
        (300, 0.5, "bootstrap", 100),
        (300, 0.95, "bootstrap", 100),
        (5000, 0.5, "order statistics", 400),
        (5000, 0.95, "order statistics", 400),
    ],
)
def test_percentile_ratio_interval_covers_the_true_ratio(
    n: int, q: float, method: str, trials: int
) -> None:
    rng = np.random.default_rng(7)

    def draw(trial: int) -> Change | str:
        base = rng.lognormal(3.0, 0.5, n)
        new = rng.lognormal(3.0, 0.5, n) * 1.10  # every quantile 10% higher
        return percentile_change(base, new, q, seed=trial)

    covered, methods = _coverage(draw, 0.10, trials)
    print(f"n={n} p{100 * q:g} {method}: coverage {covered:.3f} of {trials}")
    assert methods == {method}
    assert 0.88 <= covered <= 0.99, covered


def test_small_samples_use_scipy_bootstrap_and_large_ones_order_statistics() -> None:
    rng = np.random.default_rng(1)
    small = percentile_change(rng.random(BOOTSTRAP_CAP) + 1, rng.random(BOOTSTRAP_CAP) + 1, 0.5)
    large = percentile_change(rng.random(BOOTSTRAP_CAP + 1) + 1, rng.random(500) + 1, 0.5)
    assert isinstance(small, Change) and small.method == "bootstrap"
    assert isinstance(large, Change) and large.method == "order statistics"


def test_dependent_values_get_the_wider_interval_of_their_effective_count() -> None:
    """Pooled inter-token gaps: 100 requests × 50 gaps is 100 independent units, not 5000."""
    rng = np.random.default_rng(3)
    base, new = rng.lognormal(2, 0.3, 5000), rng.lognormal(2, 0.3, 5000)
    as_gaps = percentile_change(base, new, 0.95)
    as_requests = percentile_change(base, new, 0.95, n_base=100, n_new=100)
    assert isinstance(as_gaps, Change) and isinstance(as_requests, Change)
    width = as_requests.high - as_requests.low
    assert width > 5 * (as_gaps.high - as_gaps.low)
    assert as_requests.value == pytest.approx(as_gaps.value)
    assert (as_requests.n_base, as_requests.n_new) == (100, 100)


def test_too_few_samples_for_a_percentile_is_a_reason_not_a_number() -> None:
    found = percentile_change(np.ones(40) * 10, np.ones(400) * 10, 0.95)
    assert isinstance(found, str) and "too few samples" in found and "59" in found


def test_throughput_batch_means_interval_covers_the_true_ratio() -> None:
    rng = np.random.default_rng(11)

    def draw(trial: int) -> Change | str:
        base = rng.poisson(30, 20).astype(float)
        new = rng.poisson(27, 20).astype(float)  # 10% fewer completions per bin
        return throughput_change(base, new, seed=trial)

    covered, methods = _coverage(draw, -0.10, 100)
    print(f"throughput, 20 bins: coverage {covered:.3f} ({methods})")
    assert 0.88 <= covered <= 0.99, covered


def test_time_bins_mean_is_the_stage_throughput() -> None:
    """20 bins of a 10 s window: their mean rate is the count over the window, exactly."""
    rng = np.random.default_rng(2)
    start, end = 5_000_000_000, 15_000_000_000
    scheduled = rng.integers(start, end, 997)
    bins = time_bins(scheduled, np.ones(997), start, end, 20)
    assert len(bins) == 20
    assert bins.mean() == pytest.approx(997 / 10.0)
    assert bin_count(997) == 20 and bin_count(40) == 8 and bin_count(3) == 0


def test_throughput_with_nothing_completed_in_the_new_run_is_a_full_drop() -> None:
    found = throughput_change(np.array([3.0, 4, 5, 4, 3, 4]), np.zeros(6))
    assert isinstance(found, Change)
    assert found.value == pytest.approx(-1.0) and found.high == pytest.approx(-1.0)


def test_error_rate_difference_interval_covers_the_true_difference() -> None:
    rng = np.random.default_rng(5)

    def draw(trial: int) -> Change | str:
        return error_rate_change(rng.binomial(2000, 0.01), 2000, rng.binomial(2000, 0.02), 2000)

    covered, _ = _coverage(draw, 0.01, 400)
    print(f"error rate, Newcombe: coverage {covered:.3f}")
    assert 0.92 <= covered <= 0.99, covered


def test_error_rate_with_no_errors_on_either_side_still_has_an_interval() -> None:
    found = error_rate_change(0, 700, 0, 700)
    assert isinstance(found, Change)
    assert found.value == 0 and found.low < 0 < found.high
    assert found.high < 0.01  # 700 clean requests rule out a 1-point rise
