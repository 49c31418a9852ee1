import numpy as np

from loadtest.order_stats import min_samples, ranks


def test_the_ranks_bracket_numpy_s_linear_quantile_and_its_interval() -> None:
    values = np.arange(1000.0)
    r = ranks(1000, 0.95)
    assert values[r.below] + r.fraction * (values[r.above] - values[r.below]) == np.quantile(
        values, 0.95
    )
    assert r.low < r.below <= r.above < r.high
    assert (r.low, r.high) == (936, 964)  # 950 ± 1.96·√(1000·0.95·0.05) = ± 13.5
    assert min_samples(0.95) == 59 and min_samples(0.5) == 1
