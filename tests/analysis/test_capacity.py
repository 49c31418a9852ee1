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
    assert cap.limited_by == "TTFT p95 > 500 ms at 16 (900 ms)"
    assert cap.text() == "≈ 8" and cap.sustains and not cap.lower_bound


def test_the_first_objective_to_cross_sets_the_limit() -> None:
    rows = summary_of(
        stage_row("a", 4, ttft_p95_ms=300.0, tpot_p95_ms=10.0),
        stage_row("a", 16, ttft_p95_ms=900.0, tpot_p95_ms=50.0),
    )
    cap = capacity(rows, SloConfig(ttft_ms=500, tpot_ms=20))
    # TTFT crosses at 1/3 of the way, TPOT (10 → 50 ms against 20 ms) at 1/4: TPOT wins.
    assert cap.load == pytest.approx(4 + 12 * 0.25)
    assert cap.limited_by.startswith("TPOT p95 > 20 ms at 16")


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


def test_an_invalid_stage_fails_without_interpolation() -> None:
    rows = summary_of(
        stage_row("a", 4, ttft_p95_ms=300.0),
        stage_row("a", 16, ttft_p95_ms=900.0, valid=False, invalid_reason="error rate 5.0% > 1.0%"),
    )
    cap = capacity(rows, TTFT_ONLY)
    assert (cap.status, cap.load, cap.text()) == ("at_stage", 4.0, "4")
    assert "invalid: error rate 5.0%" in cap.limited_by


def test_an_unknown_p95_fails_the_stage() -> None:
    row = stage_row("a", 4, ttft_p95_ms=float("nan"))
    assert not stage_meets(row, TTFT_ONLY)
    assert stage_meets(stage_row("a", 4), TTFT_ONLY)
    assert not stage_meets(stage_row("a", 4, valid=False), TTFT_ONLY)


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
