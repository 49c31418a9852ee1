import pandas as pd
import pytest

from analysis.config import AnalysisConfig, SloConfig
from analysis.headline import headline
from analysis.summary import SUMMARY_COLUMNS, TargetInfo, summarize
from loadtest.records import Outcome, RequestRecord, StageRecord

S = 1_000_000_000
MS = 1_000_000


def record(
    stage: int,
    scheduled_s: float,
    *,
    ttft: float = 50.0,
    tpot: float = 10.0,
    e2e: float = 200.0,
    outcome: Outcome = Outcome.OK,
    warmup: bool = False,
    target: str = "a",
) -> dict[str, object]:
    start = int(scheduled_s * S)
    return RequestRecord(
        target=target,
        stage=stage,
        mode="concurrency",
        load=1,
        warmup=warmup,
        outcome=outcome,
        scheduled_ns=start,
        sent_ns=start,
        end_ns=start + int(e2e * MS) if outcome is Outcome.OK else None,
        output_tokens=10 if outcome is Outcome.OK else 0,
        ttft_ms=ttft if outcome is Outcome.OK else None,
        tpot_ms=tpot if outcome is Outcome.OK else None,
        e2e_ms=e2e if outcome is Outcome.OK else None,
        itl_ms=[tpot] * 9 if outcome is Outcome.OK else [],
    ).model_dump()


def stage(index: int, start_s: float, end_s: float, warmup_s: float = 1.0) -> StageRecord:
    return StageRecord(
        target="a",
        stage=index,
        mode="concurrency",
        load=2**index,
        warmup_s=warmup_s,
        start_wall_s=start_s,
        end_wall_s=end_s,
        start_ns=int(start_s * S),
        end_ns=int(end_s * S),
    )


def frame(rows: list[dict[str, object]]) -> pd.DataFrame:
    return pd.DataFrame(rows)


INFO = {"a": TargetInfo("a", "vllm", "awq", True)}


def test_warmup_is_excluded_and_throughput_counts_what_finished_in_the_window() -> None:
    rows = [record(0, 0.1 * i, ttft=999.0, warmup=True) for i in range(10)]  # in warm-up
    rows += [record(0, 1.0 + i * 0.05, ttft=40.0 + i % 20) for i in range(160)]
    summary = summarize(frame(rows), [stage(0, 0.0, 10.0)], INFO, SloConfig())
    (row,) = summary.to_dict("records")
    assert list(summary.columns) == SUMMARY_COLUMNS
    assert (row["requests"], row["ok"], row["errors"]) == (160, 160, 0)
    assert row["duration_s"] == pytest.approx(9.0)
    assert row["ttft_p50_ms"] == pytest.approx(49.5)  # the warm-up's 999 ms never counts
    # Requests whose end falls in [1 s, 10 s]: all 160 measured ones, and the warm-up ones
    # scheduled at >= 0.8 s (ending at >= 1.0 s).
    assert row["req_per_s"] == pytest.approx(162 / 9.0)
    assert row["output_tok_per_s"] == pytest.approx(1620 / 9.0)
    assert row["itl_p50_ms"] == pytest.approx(10.0)
    assert row["valid"] and row["invalid_reason"] == ""


def test_goodput_counts_only_requests_within_every_slo() -> None:
    rows = [record(0, 1.0 + i * 0.05, ttft=100.0 if i % 4 == 0 else 50.0) for i in range(100)]
    summary = summarize(
        frame(rows), [stage(0, 0.0, 10.0)], INFO, SloConfig(ttft_ms=80, tpot_ms=None)
    )
    row = summary.iloc[0]
    assert row["goodput_req_per_s"] == pytest.approx(75 / 9.0)
    assert row["req_per_s"] == pytest.approx(100 / 9.0)


def test_errors_and_few_samples_make_a_stage_invalid_with_reasons() -> None:
    rows = [record(0, 1.0 + i * 0.1) for i in range(40)]
    rows += [record(0, 1.0, outcome=Outcome.HTTP_ERROR) for _ in range(2)]
    summary = summarize(frame(rows), [stage(0, 0.0, 10.0)], INFO, SloConfig(), AnalysisConfig())
    row = summary.iloc[0]
    assert not row["valid"]
    assert "40 ok samples, p95 needs 59" in row["invalid_reason"]
    assert "error rate 4.8% > 1.0%" in row["invalid_reason"]
    assert pd.isna(row["ttft_p95_ms"]) and row["ttft_p50_ms"] == pytest.approx(50.0)


def test_headline_names_the_target_with_most_load_within_slo() -> None:
    base = {
        "stack": "vllm",
        "simulated": True,
        "mode": "concurrency",
        "valid": True,
        "tpot_p95_ms": 20.0,
        "e2e_p95_ms": 500.0,
    }
    summary = pd.DataFrame(
        [
            {
                **base,
                "target": "awq",
                "quant": "awq",
                "load": 4,
                "output_tok_per_s": 900.0,
                "ttft_p95_ms": 100.0,
            },
            {
                **base,
                "target": "awq",
                "quant": "awq",
                "load": 16,
                "output_tok_per_s": 3000.0,
                "ttft_p95_ms": 900.0,
            },
            {
                **base,
                "target": "gptq",
                "quant": "gptq",
                "load": 4,
                "output_tok_per_s": 600.0,
                "ttft_p95_ms": 120.0,
            },
        ]
    )
    lines = headline(summary, SloConfig(ttft_ms=500, tpot_ms=50))
    assert lines[0].startswith("**awq** (vllm awq) sustains the most load")
    assert (
        "900 output tok/s at concurrency 4" in lines[0] and "1.50× the next best, gptq" in lines[0]
    )
    assert any("*simulated*" in line for line in lines)
    stricter = headline(summary, SloConfig(ttft_ms=110, tpot_ms=50))
    assert "gptq" not in stricter[0] and "Never within the SLO at a valid stage: gptq." in stricter
