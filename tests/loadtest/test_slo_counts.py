from loadtest.slo_counts import Limit, Tally, judge

TTFT = [Limit("ttft", 0.95, 100.0)]


def tally(ok: int, over: int, failed: int = 0) -> Tally:
    return Tally(ok, failed, (ok,), (over,))


def test_a_stage_far_over_its_limit_is_broken_early_and_one_far_under_is_met() -> None:
    assert judge(tally(30, 12), TTFT, 0.01, early=True) == "broken"  # 40% over a 5% allowance
    assert judge(tally(19, 19), TTFT, 0.01, early=True) is None  # too few to decide anything
    assert judge(tally(30, 0), TTFT, 0.01, early=True) is None  # a p95 needs 59 samples
    assert judge(tally(400, 2), TTFT, 0.01, early=True) == "met"
    assert judge(tally(400, 20), TTFT, 0.01, early=True) is None  # 5%: right at the limit


def test_at_its_end_a_stage_takes_the_point_estimate() -> None:
    # numpy's p95 of 400 lies 5% of the way from the 380th value to the 381st (1-based)
    assert judge(tally(400, 19), TTFT, 0.01, early=False) == "met"
    assert judge(tally(400, 20), TTFT, 0.01, early=False) == "broken"
    assert judge(tally(40, 0), TTFT, 0.01, early=False) is None  # p95 unknown: no verdict


def test_errors_break_a_stage_and_failures_count_in_the_tally() -> None:
    assert judge(tally(100, 0, failed=10), TTFT, 0.01, early=True) == "broken"
    assert judge(tally(400, 0, failed=4), TTFT, 0.01, early=False) == "met"  # 0.99%
    one = Tally.of(True, [150.0], TTFT) + Tally.of(False, [None], TTFT)
    assert one == Tally(1, 1, (1,), (1,))
    assert Tally.from_list(one.to_list()) == one
    assert Tally.of(True, [None], TTFT).seen == (0,)  # an undefined figure is not a sample
