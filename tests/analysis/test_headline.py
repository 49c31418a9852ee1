import pandas as pd

from analysis.compare import compare_targets
from analysis.config import SloConfig
from analysis.headline import headline, target_label
from analysis.plan import PlanInputs, make_plan
from tests.analysis.helpers import stage_row, summary_of

SLO = SloConfig(ttft_ms=500, tpot_ms=None)


def test_the_verdict_names_who_sustains_most_and_by_how_much() -> None:
    summary = summary_of(
        stage_row("awq", 4, ttft_p95_ms=100.0, simulated=True),
        stage_row("awq", 16, ttft_p95_ms=900.0, simulated=True),  # limit 4 + 12/2 = 10 req/s
        stage_row("gptq", 4, ttft_p95_ms=300.0),
        stage_row("gptq", 16, ttft_p95_ms=1500.0),  # limit 4 + 12/6 = 6 req/s
    )
    lines = headline(summary, SLO)
    assert lines[0].startswith("**awq** (vllm awq) *(simulated)* sustains the most load")
    assert "≈ 10 req/s, ≈ 1,000 output tok/s, at ≈ 10 users" in lines[0]
    assert "1.67× the next best, **gptq** (vllm gptq) (≈ 6 req/s)" in lines[0]
    assert lines[-1] == "Figures from simulated targets are *simulated*: no GPU was measured."
    stricter = headline(summary, SloConfig(ttft_ms=200, tpot_ms=None))
    assert "the only measured target within the SLO" in stricter[0]
    assert "Never within the SLO at a valid stage: gptq." in stricter


def test_lower_bounds_are_said_as_such() -> None:
    summary = summary_of(
        stage_row("a", 4), stage_row("a", 16),  # every stage passes: ≥ 16 req/s
        stage_row("b", 4), stage_row("b", 16, ttft_p95_ms=900.0),
    )  # fmt: skip
    first = headline(summary, SLO)[0]
    assert "≥ 16 req/s" in first
    assert "met the SLO at every measured load, up to 16 users" in first
    assert "at least" in first


def test_reference_comparison_and_the_plans_cheapest_target() -> None:
    summary = summary_of(
        stage_row("awq", 4, output_tok_per_s=600.0),
        stage_row("awq", 16, ttft_p95_ms=900.0, output_tok_per_s=1800.0),
        stage_row("fp16", 4, quant="fp16", output_tok_per_s=400.0, ttft_p95_ms=300.0),
        stage_row("fp16", 16, quant="fp16", output_tok_per_s=1200.0, ttft_p95_ms=1500.0),
    )
    comparison = compare_targets(summary, SLO)
    plan = make_plan(summary, PlanInputs(slo=SLO, peak_rps=40, gpu_hour_cost=2.0))
    lines = headline(summary, SLO, comparison, plan)
    (reference,) = [line for line in lines if line.startswith("Against the reference")]
    assert "fp16 (vllm fp16) (the FP16 target)" in reference
    assert "awq 1.67× its load within the SLO" in reference  # 10 req/s vs 6
    assert "1.50× its output tok/s at equal load" in reference
    (planned,) = [line for line in lines if line.startswith("Capacity plan")]
    assert "cheapest per output token is **awq**" in planned
    assert "GPU(s) for a 40 req/s peak with 20% headroom" in planned and "$" in planned


def test_labels_mark_simulated_targets() -> None:
    assert target_label("x", "vllm", "awq", True) == "x (vllm awq) *(simulated)*"
    assert target_label("x", "other", "", False, bold=True) == "**x** (other)"
    assert headline(summary_of(), SLO) == ["No stage completed, so there is nothing to compare."]


def _pairs(verdict: str, ratio: float, low: float, high: float) -> pd.DataFrame:
    rows = [
        {"load": 4.0, "a": "awq", "b": "gptq", "metric": metric, "column": column,
         "ratio": ratio, "low": low, "high": high, "n_a": 300, "n_b": 300, "band": 0.02,
         "verdict": verdict}
        for metric, column in (("TTFT p95", "ttft_p95_ms"),)
    ]  # fmt: skip
    return pd.DataFrame(rows)


def _close_race() -> pd.DataFrame:
    return summary_of(
        stage_row("awq", 4, ttft_p95_ms=100.0),
        stage_row("awq", 16, ttft_p95_ms=900.0),  # limit ≈ 10
        stage_row("gptq", 4, ttft_p95_ms=101.0),
        stage_row("gptq", 16, ttft_p95_ms=905.0),  # limit ≈ 9.96
    )


def test_no_winner_is_called_when_the_interval_includes_a_tie() -> None:
    summary = _close_race()
    tie = compare_targets(summary, SLO, pairs=_pairs("within noise", 0.99, 0.95, 1.03))
    first = headline(summary, SLO, tie)[0]
    assert "**awq** (vllm awq) and **gptq** (vllm gptq) are within noise of each other" in first
    assert "at 4 users (awq ÷ gptq, 95% intervals: TTFT p95 0.99× (0.95–1.03))" in first
    assert "no winner is called between them" in first


def test_a_winner_is_called_with_its_interval_when_it_excludes_a_tie() -> None:
    summary = _close_race()
    lead = compare_targets(summary, SLO, pairs=_pairs("a faster", 0.85, 0.82, 0.88))
    first = headline(summary, SLO, lead)[0]
    assert first.startswith("**awq** (vllm awq) sustains the most load")
    assert "at 4 users it is faster beyond noise (TTFT p95 0.85× (0.82–0.88))" in first
    against = compare_targets(summary, SLO, pairs=_pairs("b faster", 1.2, 1.1, 1.3))
    assert (
        "yet at equal load (4 users) **gptq** (vllm gptq) is faster"
        in (headline(summary, SLO, against)[0])
    )


def test_no_valid_stage_anywhere_is_not_measured_never_failed() -> None:
    summary = summary_of(
        stage_row("a", 1, valid=False, invalid_reason="error rate 100.0% > 1.0%"),
        stage_row("b", 1, valid=False, invalid_reason="16 ok samples, p95 needs 59"),
    )
    lines = headline(summary, SLO)
    assert lines[0].startswith("No target has a valid stage, so none was measured")
    assert "Not measured (no valid stage, so no verdict): a, b." in lines
    assert not any("met the SLO" in line and line.startswith("No measured") for line in lines)


def test_when_neither_reaches_its_limit_the_pairs_intervals_decide() -> None:
    """Both meet the SLO at every load: their req/s at the top says nothing about their
    limits, so the one faster beyond noise leads, even with fewer req/s there."""
    summary = summary_of(
        stage_row("awq", 4), stage_row("awq", 16, req_per_s=15.0),
        stage_row("gptq", 4), stage_row("gptq", 16, req_per_s=16.0),
    )  # fmt: skip
    pairs = _pairs("a faster", 0.85, 0.82, 0.88).assign(load=16.0)
    first = headline(summary, SLO, compare_targets(summary, SLO, pairs=pairs))[0]
    assert first.startswith(
        "**awq** (vllm awq) is faster than **gptq** (vllm gptq) at equal load beyond noise "
        "(16 users: awq ÷ gptq, 95% intervals: TTFT p95 0.85× (0.82–0.88))"
    ), first
    assert "both met the SLO (TTFT p95 ≤ 500 ms) at every measured load, up to 16 users" in first
    tie = _pairs("within noise", 1.01, 0.97, 1.04).assign(load=16.0)
    first = headline(summary, SLO, compare_targets(summary, SLO, pairs=tie))[0]
    assert "at 16 users they are within noise of each other" in first
    assert first.endswith("so no winner is called.")
