import numpy as np
import pytest

from analysis.stats import Quantile, min_samples, quantile, quantiles


def test_sample_floors_match_measurement_md() -> None:
    assert (min_samples(0.5), min_samples(0.95), min_samples(0.99)) == (1, 59, 299)


def test_quantile_below_floor_is_not_a_number() -> None:
    result = quantile(np.arange(58.0), 0.95)
    assert result.value is None and result.n == 58
    assert quantile(np.arange(59.0), 0.95).value is not None


def test_quantile_and_interval_bracket_the_truth() -> None:
    rng = np.random.default_rng(1)
    data = rng.exponential(100.0, size=5000)
    result = quantile(data, 0.95)
    truth = -100.0 * np.log(0.05)
    assert result.value == pytest.approx(np.quantile(data, 0.95))
    assert result.ci_low is not None and result.ci_high is not None
    assert result.ci_low < result.value < result.ci_high
    assert result.ci_low < truth < result.ci_high


def test_nan_values_are_ignored() -> None:
    result = quantile([1.0, float("nan"), 3.0], 0.5)
    assert result.n == 2 and result.value == 2.0


@pytest.mark.parametrize("n", [1, 2, 59, 60, 299, 300, 1001])
def test_several_quantiles_at_once_match_numpy(n: int) -> None:
    data = np.random.default_rng(n).lognormal(3.0, 0.5, size=n)
    found = quantiles(data, [0.5, 0.9, 0.95, 0.99])
    for result in found:
        assert result.n == n
        if result.value is None:
            assert n < min_samples(result.q)
            continue
        assert result.value == pytest.approx(np.quantile(data, result.q), rel=1e-12)
        assert result.ci_low is not None and result.ci_high is not None
        assert data.min() <= result.ci_low <= result.value <= result.ci_high <= data.max()
    assert quantiles([], [0.5]) == [Quantile(0.5, 0, None, None, None)]
