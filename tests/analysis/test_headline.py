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
    assert "≈ 10 req/s, ≈ 1,000 output tok/s, at concurrency ≈ 10" in lines[0]
    assert "1.67× the next best, **gptq** (vllm gptq) (≈ 6 req/s)" in lines[0]
    assert lines[-1] == "Figures from simulated targets are *simulated*: no GPU was measured."
    stricter = headline(summary, SloConfig(ttft_ms=200, tpot_ms=None))
    assert "the only target within the SLO" in stricter[0]
    assert "Never within the SLO at a valid stage: gptq." in stricter


def test_lower_bounds_are_said_as_such() -> None:
    summary = summary_of(
        stage_row("a", 4), stage_row("a", 16),  # every stage passes: ≥ 16 req/s
        stage_row("b", 4), stage_row("b", 16, ttft_p95_ms=900.0),
    )  # fmt: skip
    first = headline(summary, SLO)[0]
    assert "≥ 16 req/s" in first
    assert "met the SLO at every tested load, up to concurrency 16" in first
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
