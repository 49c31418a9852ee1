import pytest

from analysis.compare import compare_targets
from analysis.config import SloConfig
from analysis.repeats import by_load, has_repeats
from tests.analysis.helpers import stage_row, summary_of

SLO = SloConfig(ttft_ms=500, tpot_ms=None)


def test_without_repeats_the_summary_is_unchanged() -> None:
    summary = summary_of(stage_row("a", 1), stage_row("a", 4))
    out = by_load(summary)
    assert not has_repeats(summary)
    assert list(out["load"]) == [1, 4] and list(out["repeats"]) == [1, 1]


def test_repeats_fold_to_the_median_of_the_valid_ones_with_their_spread() -> None:
    summary = summary_of(
        stage_row("a", 4, stage=0, repeat=0, ttft_p50_ms=100.0, ttft_p95_ms=200.0),
        stage_row("a", 4, stage=1, repeat=1, ttft_p50_ms=110.0, ttft_p95_ms=220.0),
        stage_row("a", 4, stage=2, repeat=2, ttft_p50_ms=120.0, ttft_p95_ms=240.0),
        stage_row("a", 4, stage=3, repeat=3, valid=False, invalid_reason="server restarted",
                  ttft_p50_ms=900.0, ttft_p95_ms=990.0),
        stage_row("b", 4, stage=0, valid=False, invalid_reason="x"),
        stage_row("b", 4, stage=1, repeat=1, valid=False, invalid_reason="y"),
    )  # fmt: skip
    assert has_repeats(summary)
    a, b = by_load(summary).to_dict("records")
    assert (a["repeats"], a["valid_repeats"], a["valid"]) == (4, 3, True)
    assert a["ttft_p95_ms"] == 220.0  # the invalid repeat's 990 ms is left out
    assert a["repeat_spread_pct"] == pytest.approx(100 * 20 / 110)
    assert a["invalid_reason"] == "1 of 4 repeats invalid"
    assert (b["valid"], b["invalid_reason"]) == (False, "every repeat invalid: x | y")
    comparison = compare_targets(summary, SLO)
    assert comparison.capacity["a"].status == "max_tested"
    assert comparison.capacity["b"].status == "not_measured"
    assert list(comparison.table["valid_repeats"]) == [3, 0]
