import math

import pytest

from analysis.capacity import capacities, capacity, stage_meets
from analysis.config import SloConfig
from tests.analysis.helpers import stage_row, summary_of

TTFT_ONLY = SloConfig(ttft_ms=500, tpot_ms=None)


def test_limit_is_interpolated_between_last_pass_and_first_fail() -> None:
    rows = summary_of(
        stage_row("a", 1, ttft_p95_ms=100.0),
        stage_row("a", 4, ttft_p95_ms=300.0),
        stage_row("a", 16, ttft_p95_ms=900.0),
    )
    cap = capacity(rows, TTFT_ONLY)
    # 500 ms is a third of the way from 300 ms (load 4) to 900 ms (load 16).
    assert cap.status == "interpolated"
    assert cap.load == pytest.approx(8.0)
    assert cap.req_per_s == pytest.approx(8.0)  # req/s interpolated at the same fraction
    assert cap.output_tok_per_s == pytest.approx(800.0)
    assert cap.limited_by == "TTFT p95 > 500 ms at 16 users (900 ms)"
    assert cap.text() == "≈ 8" and cap.sustains and not cap.lower_bound


def test_the_first_objective_to_cross_sets_the_limit() -> None:
    rows = summary_of(
        stage_row("a", 4, ttft_p95_ms=300.0, tpot_p95_ms=10.0),
        stage_row("a", 16, ttft_p95_ms=900.0, tpot_p95_ms=50.0),
    )
    cap = capacity(rows, SloConfig(ttft_ms=500, tpot_ms=20))
    # TTFT crosses at 1/3 of the way, TPOT (10 → 50 ms against 20 ms) at 1/4: TPOT wins.
    assert cap.load == pytest.approx(4 + 12 * 0.25)
    assert cap.limited_by.startswith("TPOT p95 > 20 ms at 16 users")


def test_every_stage_passing_is_a_lower_bound_at_the_max_tested_load() -> None:
    rows = summary_of(stage_row("a", 1), stage_row("a", 4), stage_row("a", 16))
    cap = capacity(rows, TTFT_ONLY)
    assert (cap.status, cap.load, cap.req_per_s) == ("max_tested", 16.0, 16.0)
    assert cap.lower_bound and cap.sustains
    assert cap.text() == "≥ 16 (max tested)"


def test_failing_the_lowest_load_is_none() -> None:
    rows = summary_of(stage_row("a", 1, ttft_p95_ms=600.0), stage_row("a", 4, ttft_p95_ms=90.0))
    cap = capacity(rows, TTFT_ONLY)
    assert (cap.status, cap.load, cap.text()) == ("none", None, "none")
    assert not cap.sustains


def test_an_invalid_top_stage_is_unknown_not_a_failure() -> None:
    rows = summary_of(
        stage_row("a", 4, ttft_p95_ms=300.0),
        stage_row("a", 16, ttft_p95_ms=900.0, valid=False, invalid_reason="error rate 5.0% > 1.0%"),
    )
    cap = capacity(rows, TTFT_ONLY)
    # The only measured stage passed: the limit is at least 4, and 16 is named as skipped.
    assert (cap.status, cap.load, cap.text()) == ("max_tested", 4.0, "≥ 4 (max tested)")
    assert cap.skipped == ("16 users: invalid (error rate 5.0% > 1.0%)",)


def test_the_false_headline_of_issue_12_gets_the_right_limit() -> None:
    """Stages [1, 8, 32]: the 1-user stage had 16 samples (invalid), 8 and 32 are valid and
    within the SLO. The limit is ≥ 32, never "no target met the SLO"."""
    rows = summary_of(
        stage_row("a", 1, valid=False, invalid_reason="16 ok samples, p95 needs 59",
                  ttft_p95_ms=None, ok=16),
        stage_row("a", 8, ttft_p95_ms=74.0),
        stage_row("a", 32, ttft_p95_ms=112.0),
    )  # fmt: skip
    cap = capacity(rows, TTFT_ONLY)
    assert (cap.status, cap.load, cap.sustains) == ("max_tested", 32.0, True)
    assert cap.skipped == ("1 user: invalid (16 ok samples, p95 needs 59)",)


def test_a_target_without_a_valid_stage_is_not_measured() -> None:
    rows = summary_of(
        stage_row("a", 1, valid=False, invalid_reason="error rate 100.0% > 1.0%"),
        stage_row("a", 4, valid=False, invalid_reason="error rate 100.0% > 1.0%"),
    )
    cap = capacity(rows, TTFT_ONLY)
    assert (cap.status, cap.measured, cap.sustains) == ("not_measured", False, False)
    assert cap.text() == "not measured" and len(cap.skipped) == 2


def test_an_invalid_stage_between_two_measured_ones_is_stepped_over() -> None:
    rows = summary_of(
        stage_row("a", 1, ttft_p95_ms=100.0),
        stage_row("a", 4, valid=False, invalid_reason="server restarted"),
        stage_row("a", 16, ttft_p95_ms=900.0),
    )
    cap = capacity(rows, TTFT_ONLY)
    # Interpolated between 1 (100 ms) and 16 (900 ms): 500 ms at half-way, load 8.5.
    assert cap.status == "interpolated" and cap.load == pytest.approx(8.5)
    assert cap.skipped == ("4 users: invalid (server restarted)",)


def test_an_unknown_percentile_is_skipped_not_failed() -> None:
    row = stage_row("a", 4, ttft_p95_ms=float("nan"))
    assert not stage_meets(row, TTFT_ONLY)
    assert stage_meets(stage_row("a", 4), TTFT_ONLY)
    assert not stage_meets(stage_row("a", 4, valid=False), TTFT_ONLY)
    rows = summary_of(row, stage_row("a", 8, ttft_p95_ms=200.0))
    cap = capacity(rows, TTFT_ONLY)
    assert (cap.status, cap.load) == ("max_tested", 8.0)
    assert cap.skipped == ("4 users: TTFT p95 unknown (too few samples)",)


def test_objectives_at_other_percentiles_read_their_own_column() -> None:
    p99 = SloConfig(ttft_ms=500, tpot_ms=None, percentile=99)
    rows = summary_of(
        stage_row("a", 4, ttft_p95_ms=300.0, ttft_p99_ms=450.0),
        stage_row("a", 16, ttft_p95_ms=400.0, ttft_p99_ms=650.0),
    )
    cap = capacity(rows, p99)
    assert cap.status == "interpolated" and cap.load == pytest.approx(4 + 12 * 50 / 200)
    assert cap.limited_by.startswith("TTFT p99 > 500 ms at 16 users")


def test_the_first_failure_ends_the_search_and_rows_are_sorted_by_load() -> None:
    rows = summary_of(
        stage_row("a", 16, ttft_p95_ms=100.0),  # passes again, but after a failure
        stage_row("a", 4, ttft_p95_ms=700.0),
        stage_row("a", 1, ttft_p95_ms=100.0),
    )
    cap = capacity(rows, TTFT_ONLY)
    assert cap.status == "interpolated"
    assert cap.load == pytest.approx(1 + 3 * (400 / 600))


def test_capacities_keeps_run_order() -> None:
    rows = summary_of(stage_row("z", 1), stage_row("a", 1, ttft_p95_ms=900.0))
    caps = capacities(rows, TTFT_ONLY)
    assert list(caps) == ["z", "a"]
    assert caps["a"].status == "none" and math.isclose(caps["z"].load or 0, 1.0)
    assert capacities(summary_of(), TTFT_ONLY) == {}
