"""The speed-quality decision, pure: which target serves the most load within the SLO per GPU
among those that meet an accuracy bar, uncertain and not measurable never counted as meeting
it, the plan's exclusions, and where the bar comes from."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import pytest

from analysis.config import SloConfig
from analysis.plan import PlanInputs, exclude, make_plan
from analysis.speed_quality import decision_line, resolve_bar, speed_quality
from analysis.speed_quality_plot import speed_quality_figure
from tests.analysis.helpers import stage_row, summary_of

SLO = SloConfig(ttft_ms=500, tpot_ms=50)
Delta = tuple[float, float, float] | None


def quality_doc(deltas: dict[str, Delta], reference: str | None = "fp16") -> dict[str, Any]:
    """A quality.json as the probe writes it: `None` = perplexity not measurable."""
    targets = []
    for name, delta in deltas.items():
        entry: dict[str, Any] = {"name": name, "reference": name == reference}
        if delta is None:
            entry |= {"perplexity": None, "ppl_delta": None,
                      "perplexity_not_measurable": "prompt log-probs: HTTP 422",
                      "ppl_delta_not_measurable": "perplexity not measured"}  # fmt: skip
        else:
            value, low, high = delta
            entry |= {"perplexity": {"value": 6.0 * (1 + value)},
                      "ppl_delta": {"value": value, "ci_low": low, "ci_high": high},
                      "ppl_delta_not_measurable": None}  # fmt: skip
        targets.append(entry)
    text = {"path": "/x/wiki.txt", "window": 512, "stride": 256, "scored_tokens": 9000}
    return {"reference": reference, "simulated": False, "text": text, "targets": targets}


# Requests/s within the SLO per GPU at the top stage (every stage meets the SLO): other-awq
# is the fastest, then awq, gptq, and fp16 last.
RATES = {"fp16": 10.0, "awq": 16.0, "gptq": 14.0, "other-awq": 30.0}
DELTAS: dict[str, Delta] = {
    "fp16": (0.0, 0.0, 0.0),
    "awq": (0.024, 0.019, 0.029),
    "gptq": (0.040, 0.034, 0.046),
    "other-awq": None,  # its API has no prompt log-probs
}


def plan_for(rates: dict[str, float], inputs: PlanInputs | None = None) -> Any:
    rows = [stage_row(name, 4, req_per_s=rate, output_tok_per_s=rate * 100)
            for name, rate in rates.items()]  # fmt: skip
    return make_plan(summary_of(*rows), inputs or PlanInputs(slo=SLO))


def view(bar: float | None, deltas: dict[str, Delta] = DELTAS, rates: dict[str, float] = RATES,
         reference: str | None = "fp16") -> Any:  # fmt: skip
    return speed_quality(quality_doc(deltas, reference), plan_for(rates), bar, "test")


@pytest.mark.parametrize(
    ("bar", "choice"),
    [(0.01, "fp16"), (0.02, "fp16"), (0.03, "awq"), (0.05, "awq"), (0.10, "awq")],
)
def test_the_choice_follows_the_bar(bar: float, choice: str) -> None:
    decision = view(bar).decision
    assert decision.choice == choice
    assert decision.max_rps == RATES[choice]
    assert "other-awq" in decision.not_measurable, "fastest, but never counted as passing"


def test_a_straddling_interval_is_uncertain_and_never_chosen() -> None:
    # awq's interval 1.9%…2.9% straddles a 2.5% bar: uncertain, so fp16 is chosen.
    decision = view(0.025).decision
    assert decision.uncertain == ["awq"] and decision.misses == ["gptq"]
    assert decision.choice == "fp16"
    assert view(0.025).excluded()["awq"].startswith("uncertain: +2.40% (95% CI +1.90% to")


def test_a_quantized_target_is_chosen_over_a_slower_one_that_also_meets() -> None:
    decision = view(0.05).decision
    assert decision.meets == ["fp16", "awq", "gptq"] and decision.choice == "awq"
    faster_gptq = view(0.05, rates={**RATES, "gptq": 20.0}).decision
    assert faster_gptq.choice == "gptq"


def test_nothing_is_chosen_when_nothing_eligible_sustains_the_slo() -> None:
    rows = [stage_row("fp16", 4, ttft_p95_ms=900.0), stage_row("awq", 4, ttft_p95_ms=900.0)]
    plan = make_plan(summary_of(*rows), PlanInputs(slo=SLO))  # both fail the SLO
    result = speed_quality(quality_doc({"fp16": DELTAS["fp16"], "awq": DELTAS["awq"]}), plan,
                           0.05)  # fmt: skip
    assert result.decision.choice is None
    assert result.decision.no_capacity == ["fp16", "awq"]
    assert "no target both meets it and serves load within the SLO" in decision_line(result)


def test_not_measurable_is_reported_with_its_reason_never_as_zero() -> None:
    result = view(0.05)
    other = result.by_name["other-awq"]
    assert other.delta is None and other.perplexity is None
    assert other.verdict(0.05) == ("not measurable", "prompt log-probs: HTTP 422")
    row = next(r for r in result.to_json()["targets"] if r["target"] == "other-awq")
    assert row["ppl_delta"] is None and row["verdict"] == "not measurable"
    assert row["ppl_delta_not_measurable"] == "prompt log-probs: HTTP 422"


def test_a_target_absent_from_quality_json_is_not_measurable() -> None:
    deltas = {k: v for k, v in DELTAS.items() if k != "gptq"}
    result = view(0.05, deltas=deltas)
    assert result.by_name["gptq"].not_measurable == "not probed (no entry in quality.json)"
    assert "gptq" in result.decision.not_measurable
    missing = speed_quality(None, plan_for(RATES), 0.05)
    assert missing.note is not None and "quality:" in missing.note
    assert missing.decision.choice is None and missing.excluded().keys() == RATES.keys()


def test_without_a_reference_every_quantized_target_is_not_measurable() -> None:
    deltas = {name: None for name in DELTAS}
    result = view(0.05, deltas=deltas, reference=None)
    assert result.decision.choice is None
    assert sorted(result.decision.not_measurable) == sorted(DELTAS)


def test_the_plan_excludes_what_the_bar_rules_out_and_picks_among_the_rest() -> None:
    plan = plan_for(RATES)
    assert plan.cheapest == "other-awq"
    for bar, cheapest in ((0.01, "fp16"), (0.05, "awq")):
        result = view(bar)
        barred = exclude(plan, bar, result.excluded())
        assert barred.cheapest == cheapest
        assert "other-awq" in barred.excluded and "fp16" not in barred.excluded
        document = barred.to_json()
        assert document["accuracy_bar"] == bar and document["cheapest"] == cheapest
        assert document["excluded_by_accuracy_bar"]["other-awq"].startswith("not measurable")
        assert plan.cheapest == "other-awq", "the unbarred plan is left as it was"


def test_without_a_bar_nothing_is_excluded_and_the_table_shows_the_standard_bars() -> None:
    result = view(None)
    assert result.excluded() == {} and result.decision is None
    assert decision_line(result) is None
    assert [d.bar for d in result.decisions] == [0.01, 0.02, 0.05]
    assert [d.choice for d in result.decisions] == ["fp16", "fp16", "awq"]
    assert [d.bar for d in view(0.03).decisions] == [0.01, 0.02, 0.03, 0.05]


def test_the_bar_comes_from_the_flag_then_the_plan_then_the_config() -> None:
    config = {"quality": {"max_ppl_increase": 0.05}}
    asked = PlanInputs(max_ppl_increase=0.02)
    assert resolve_bar(0.01, asked, config) == (0.01, "--max-ppl-increase")
    assert resolve_bar(None, asked, config) == (0.02, "quantbench plan --max-ppl-increase")
    assert resolve_bar(None, PlanInputs(), config) == (0.05, "quality.max_ppl_increase")
    assert resolve_bar(None, None, {"quality": None}) == (None, "")


def test_the_chart_draws_not_measurable_targets_apart_and_rings_the_choice() -> None:
    figure = speed_quality_figure(view(0.05), "t")
    (ax,) = figure.axes
    texts = [t.get_text() for t in ax.texts]
    assert "other-awq: not measurable; ≥ 30 req/s" in texts
    assert "awq: meets; ≥ 16 req/s ← chosen" in texts
    assert "gptq: meets; ≥ 14 req/s" in texts
    assert "fp16 (FP16 reference): ≥ 10 req/s" in texts
    assert "accuracy bar +5.00%" in texts
    # Error bars: one per target with a change against FP16 (the reference included), none
    # for other-awq, so it can never sit on the zero line as if it matched FP16.
    assert len(ax.containers) == 3
    plt.close(figure)
