import math

import pytest

from analysis.server.semantics import (
    aligned_window,
    bucket_quantile,
    changes,
    counter_increase,
    resets,
    scrape_interval,
)

INF = math.inf
# 10 observations: 2 up to 0.1 s, 4 in (0.1, 0.25], 3 in (0.25, 0.5], 1 above 0.5 s.
BUCKETS = [(0.1, 2.0), (0.25, 6.0), (0.5, 9.0), (INF, 10.0)]


def test_increase_adds_the_post_reset_value_and_never_goes_negative() -> None:
    assert counter_increase([5, 8, 2, 4]) == 3 + 2 + 2  # 5→8, reset (count 2 since), 2→4
    assert resets([5, 8, 2, 4]) == 1
    assert counter_increase([100, 0]) == 0, "a reset to zero adds nothing, never -100"
    assert counter_increase([3, 3]) == 0
    assert math.isnan(counter_increase([7])), "one sample has no increase"
    assert changes([1, 1, 2, 2, 1]) == 2


def test_quantile_interpolates_linearly_inside_the_bucket() -> None:
    # rank 0.5·10 = 5 lies in (0.1, 0.25], which holds ranks 2..6: 0.1 + 0.15·(5-2)/4.
    assert bucket_quantile(0.5, BUCKETS) == pytest.approx(0.2125)
    # rank 1 in the first bucket: interpolated from 0 to 0.1 over its 2 observations.
    assert bucket_quantile(0.1, BUCKETS) == pytest.approx(0.05)
    # rank 8.5 in (0.25, 0.5], ranks 6..9: 0.25 + 0.25·2.5/3.
    assert bucket_quantile(0.85, BUCKETS) == pytest.approx(0.25 + 0.25 * 2.5 / 3)


def test_quantile_edge_cases_follow_prometheus() -> None:
    assert bucket_quantile(0.95, BUCKETS) == 0.5, "+Inf bucket: the highest finite bound"
    assert math.isnan(bucket_quantile(0.5, [(0.1, 0.0), (INF, 0.0)])), "no observations"
    assert math.isnan(bucket_quantile(0.5, [(0.1, 2.0), (0.5, 4.0)])), "no +Inf bucket"
    assert math.isnan(bucket_quantile(0.5, [(INF, 4.0)])), "one bucket"
    assert bucket_quantile(1.5, BUCKETS) == INF and bucket_quantile(-0.1, BUCKETS) == -INF
    shuffled = [(INF, 10.0), (0.25, 6.0), (0.1, 2.0), (0.5, 9.0)]
    assert bucket_quantile(0.5, shuffled) == pytest.approx(0.2125), "order does not matter"
    split = [(0.1, 1.0), (0.1, 1.0), (0.25, 6.0), (0.5, 9.0), (INF, 10.0)]
    assert bucket_quantile(0.5, split) == pytest.approx(0.2125), "equal bounds are merged"
    dented = [(0.1, 2.0), (0.25, 6.0), (0.5, 5.0), (INF, 10.0)]
    assert bucket_quantile(0.65, dented) == pytest.approx(0.5), "counts forced monotonic"


def test_window_is_bounded_by_scrapes() -> None:
    times = [10.0, 11.0, 12.0, 13.0, 14.0]
    assert aligned_window(times, 11.5, 13.9) == (11.0, 13.0)
    assert aligned_window(times, 11.0, 14.0) == (11.0, 14.0), "a scrape at the edge counts"
    assert aligned_window(times, 5.0, 12.5) == (10.0, 12.0), "no scrape before: the first"
    assert aligned_window(times, 12.2, 12.8) is None, "one scrape is no window"
    assert aligned_window([], 0.0, 1.0) is None
    assert scrape_interval([0.0, 1.0, 2.1, 3.0]) == 1.0
