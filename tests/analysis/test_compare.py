import pandas as pd
import pytest

from analysis.compare import (
    compare_targets,
    comparison_table,
    output_length_warning,
    pick_reference,
    ranking,
)
from analysis.config import SloConfig
from tests.analysis.helpers import stage_row, summary_of

SLO = SloConfig(ttft_ms=500, tpot_ms=None)


def three_targets() -> pd.DataFrame:
    return summary_of(
        stage_row("awq", 4, output_tok_per_s=600.0, ttft_p95_ms=100.0),
        stage_row("awq", 16, output_tok_per_s=1800.0, ttft_p95_ms=400.0),
        stage_row("fp16", 4, quant="fp16", output_tok_per_s=400.0, ttft_p95_ms=200.0),
        stage_row("fp16", 16, quant="fp16", output_tok_per_s=1200.0, ttft_p95_ms=800.0),
        stage_row("gptq", 4, output_tok_per_s=500.0, ttft_p95_ms=900.0),
    )


def test_the_fp16_target_is_the_reference_unless_the_config_names_one() -> None:
    summary = three_targets()
    assert pick_reference(summary, None) == ("fp16", "FP16 target")
    assert pick_reference(summary, "gptq") == ("gptq", "analysis.reference")
    assert pick_reference(summary[summary["target"] != "fp16"], None) == (None, "")


def test_a_reference_that_is_not_a_target_warns_and_falls_back() -> None:
    comparison = compare_targets(three_targets(), SLO, reference="nope")
    assert comparison.reference == "fp16"
    assert "'nope', which is not a target" in comparison.warnings[0]


def test_one_table_of_every_target_at_every_load_with_ratios_at_equal_load() -> None:
    table = comparison_table(three_targets(), "fp16")
    assert list(zip(table["load"], table["target"], strict=True)) == [
        (4, "awq"), (4, "fp16"), (4, "gptq"), (16, "awq"), (16, "fp16"),
    ]  # fmt: skip
    by = table.set_index(["target", "load"])
    assert by.loc[("awq", 4), "output_tok_per_s_ratio"] == pytest.approx(1.5)
    assert by.loc[("awq", 16), "ttft_p95_ratio"] == pytest.approx(0.5)
    assert by.loc[("fp16", 16), "output_tok_per_s_ratio"] == pytest.approx(1.0)
    assert by.loc[("gptq", 4), "ttft_p95_ratio"] == pytest.approx(4.5)
    no_reference = comparison_table(three_targets(), None)
    assert no_reference["output_tok_per_s_ratio"].isna().all()


def test_comparison_ranks_by_rate_within_slo_and_gives_reference_ratios() -> None:
    comparison = compare_targets(three_targets(), SLO)
    assert comparison.ranking == ["awq", "fp16", "gptq"]  # gptq never meets the SLO
    assert comparison.capacity["awq"].lower_bound
    # fp16 crosses 500 ms at 4 + 12 × 300/600 = 10 (req/s = load in these rows).
    assert comparison.capacity["fp16"].req_per_s == pytest.approx(10.0)
    assert comparison.capacity_ratio("awq") == pytest.approx(1.6)
    assert comparison.capacity_ratio("gptq") is None
    assert comparison.throughput_ratio("awq") == pytest.approx(1.5)  # median of 1.5 and 1.5
    assert ranking({}) == []


def test_unequal_output_lengths_warn_above_five_percent() -> None:
    close = summary_of(
        stage_row("vllm", 4, output_tokens_mean=128.0),
        stage_row("tgi", 4, output_tokens_mean=132.0),
    )
    assert output_length_warning(close) is None
    apart = summary_of(
        stage_row("vllm", 4, output_tokens_mean=128.0, ok=100),
        stage_row("tgi", 4, output_tokens_mean=100.0, ok=50),
        stage_row("tgi", 16, output_tokens_mean=112.0, ok=150),  # weighted mean 109
    )
    warning = output_length_warning(apart)
    assert warning is not None and "differ by 17%" in warning and "tgi 109.0" in warning
    assert warning in compare_targets(apart, SLO).warnings
