import numpy as np
import pandas as pd
import pytest

from analysis.config import AnalysisConfig, SloConfig
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

DESIGN_COLUMNS = [
    "target", "stack", "quant", "simulated", "stage", "mode", "load", "requests", "ok", "errors",
    "duration_s", "req_per_s", "output_tok_per_s", "ttft_p50_ms", "ttft_p95_ms", "ttft_p99_ms",
    "tpot_p50_ms", "tpot_p95_ms", "itl_p50_ms", "itl_p95_ms", "e2e_p50_ms", "e2e_p95_ms",
    "ttft_p95_all_ms", "e2e_p95_all_ms", "schedule_lag_p99_ms", "goodput_req_per_s", "valid",
    "invalid_reason",
]  # fmt: skip


def test_a_stage_is_the_requests_it_scheduled_after_its_warm_up() -> None:
    """One definition for every figure: warm-up requests (even those ending in the window)
    and the previous stage's stragglers count nowhere; throughput is the stage's completed
    requests (and tokens) over the measured window."""
    rows = [record(0, 0.1 * i, ttft=999.0, warmup=True) for i in range(10)]  # in warm-up
    rows += [record(0, 1.0 + i * 0.05, ttft=40.0 + i % 20) for i in range(160)]
    straggler = record(0, 0.5, ttft=5000.0, e2e=9000.0)  # previous stage's, ends in window
    straggler["stage"] = 99
    summary = summarize(frame([*rows, straggler]), [stage(0, 0.0, 10.0)], INFO, SloConfig())
    (row,) = summary.to_dict("records")
    assert list(summary.columns) == SUMMARY_COLUMNS
    assert (row["requests"], row["ok"], row["errors"]) == (160, 160, 0)
    assert row["duration_s"] == pytest.approx(9.0)
    assert row["ttft_p50_ms"] == pytest.approx(49.5)  # the warm-up's 999 ms never counts
    assert row["ttft_mean_ms"] == pytest.approx(49.5)
    assert row["req_per_s"] == pytest.approx(160 / 9.0)
    assert row["output_tok_per_s"] == pytest.approx(1600 / 9.0)
    assert row["itl_p50_ms"] == pytest.approx(10.0)
    assert row["valid"] and row["invalid_reason"] == ""


def test_input_and_total_token_throughput_beside_output() -> None:
    rows = [record(0, 1.0 + i * 0.05) for i in range(100)]
    for r in rows:
        r["prompt_tokens"] = 30
    (row,) = summarize(frame(rows), [stage(0, 0.0, 10.0)], INFO, SloConfig()).to_dict("records")
    assert row["input_tok_per_s"] == pytest.approx(3000 / 9.0)
    assert row["output_tok_per_s"] == pytest.approx(1000 / 9.0)
    assert row["total_tok_per_s"] == pytest.approx(4000 / 9.0)
    assert (row["input_tokens"], row["output_tokens"]) == (3000, 1000)
    for r in rows:
        r["prompt_tokens"] = None  # a server that never says: unknown, not zero
    (row,) = summarize(frame(rows), [stage(0, 0.0, 10.0)], INFO, SloConfig()).to_dict("records")
    assert row["input_tok_per_s"] is None and row["total_tok_per_s"] is None


def test_selected_percentiles_and_the_slos_are_all_columns() -> None:
    rows = [record(0, 1.0 + i * 0.002, ttft=float(i)) for i in range(3000)]
    limits = AnalysisConfig(percentiles=[50, 99.9])
    slo = SloConfig(ttft_ms=500, tpot_ms=None, percentile=99)
    summary = summarize(frame(rows), [stage(0, 0.0, 10.0)], INFO, slo, limits)
    row = summary.iloc[0]
    assert row["ttft_p99.9_ms"] == pytest.approx(2996.001)  # (n − 1)·q = 2996.001
    assert row["ttft_p99.9_lo_ms"] <= row["ttft_p99.9_ms"] <= row["ttft_p99.9_hi_ms"]
    assert row["ttft_mean_ms"] == pytest.approx(1499.5)
    assert row["ttft_std_ms"] == pytest.approx(float(pd.Series(range(3000)).std(ddof=0)))
    for column in ("ttft_p50_ms", "ttft_p90_ms", "ttft_p95_ms", "ttft_p99_ms"):
        assert column in summary  # the defaults stay, whatever else is asked


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
    assert row["invalid_reason"] == (
        "error rate 4.8% > 1.0% (2 http_error); 40 ok samples, p95 needs 59"
    )  # errors first: the cause before its consequence
    assert row["error_breakdown"] == "http_error × 2"
    assert pd.isna(row["ttft_p95_ms"]) and row["ttft_p50_ms"] == pytest.approx(50.0)


def test_a_busy_load_generator_makes_its_stage_invalid() -> None:
    """The busiest generator process's mean CPU over the measured window decides; samples
    in the warm-up and in other stages do not count."""
    rows = [record(s, 10.0 * s + 1.0 + i * 0.1) for s in (0, 1) for i in range(80)]
    stages = [stage(0, 0.0, 9.0), stage(1, 10.0, 19.0)]
    samples = [(1, t, 50.0) for t in range(1, 19)]  # pid 1: calm throughout
    samples += [(2, 0.5, 100.0)]  # pid 2: busy in stage 0's warm-up only
    samples += [(2, t, 40.0) for t in range(1, 10)]
    samples += [(2, t, 95.0) for t in range(11, 19)]  # ... and all through stage 1
    generator = pd.DataFrame(samples, columns=["pid", "wall_s", "cpu_percent"])
    summary = summarize(frame(rows), stages, INFO, SloConfig(), generator=generator)
    calm, busy = summary.to_dict("records")
    assert calm["valid"], calm["invalid_reason"]
    assert not busy["valid"]
    assert "load generator at 95% CPU (> 90%): timings unreliable" in busy["invalid_reason"]


def lag_samples(
    pid: int, seconds: range, late_ms: list[float], busy: float = 1.0
) -> list[dict[str, object]]:
    """Scripted generator.jsonl lines: 100 probe ticks a second, `late_ms` late each second,
    the process on the CPU for `busy` of each late tick."""
    return [
        {"pid": pid, "wall_s": float(t), "cpu_percent": 40.0, "loop_ticks": 100,
         "loop_late_ms": late_ms, "loop_busy": [busy] * len(late_ms)}
        for t in seconds
    ]  # fmt: skip


def test_a_lagging_generator_event_loop_makes_its_stage_invalid_with_that_reason() -> None:
    """The direct sign of a saturated generator: its own work held its event loop, so a probe
    timer woke late. Its mean CPU here is a calm 40%: the lag alone decides. Lag in another
    stage does not count, and a run recorded before the probe (no loop columns) is judged on
    its CPU only."""
    rows = [record(s, 10.0 * s + 1.0 + i * 0.1) for s in (0, 1) for i in range(80)]
    stages = [stage(0, 0.0, 9.0), stage(1, 10.0, 19.0)]
    lines = lag_samples(1, range(1, 10), [1.5])  # 1 tick in 100 at 1.5 ms: p99 ≤ 20 ms
    lines += lag_samples(1, range(11, 19), [12.0, 30.0, 7.5])  # 3 in 100 late, 1 by 30 ms
    generator = pd.DataFrame(lines)
    summary = summarize(frame(rows), stages, INFO, SloConfig(), generator=generator)
    calm, lagging = summary.to_dict("records")
    assert calm["valid"], calm["invalid_reason"]
    assert calm["loop_lag_p99_ms"] == pytest.approx(1.5)
    assert not lagging["valid"]
    assert lagging["loop_lag_p99_ms"] == pytest.approx(30.0)  # 8 of 800 ticks at 30 ms
    assert lagging["invalid_reason"] == (
        "load generator's own work held its event loop 30.0 ms at p99 (> 20 ms): its sends "
        "and reads fell behind (reads later than a token gap merge tokens), raise "
        "load.processes"
    )
    old = pd.DataFrame([(1, t, 40.0) for t in range(1, 19)], columns=["pid", "wall_s",
                                                                       "cpu_percent"])  # fmt: skip
    before_probe = summarize(frame(rows), stages, INFO, SloConfig(), generator=old)
    assert before_probe["valid"].all() and before_probe["loop_lag_p99_ms"].isna().all()


def test_the_read_lag_of_kernel_stamped_bytes_is_shown_per_stage() -> None:
    """How long received bytes waited for the generator: shown (p99 over the stage's
    requests, which needs 299 of them), not a validity rule — the stamps are the kernel's."""
    lags = [0.5] * 297 + [30.0, 40.0, 50.0]
    rows = [{**record(0, 1.0 + i * 0.025), "read_lag_ms": lag} for i, lag in enumerate(lags)]
    summary = summarize(frame(rows), [stage(0, 0.0, 9.0)], INFO, SloConfig())
    assert summary.loc[0, "read_lag_p99_ms"] == pytest.approx(np.quantile(lags, 0.99))
    assert summary.loc[0, "valid"], summary.loc[0, "invalid_reason"]
    bare = [record(0, 1.0 + i * 0.025) for i in range(300)]  # no kernel stamps: empty
    assert pd.isna(summarize(frame(bare), [stage(0, 0.0, 9.0)], INFO, SloConfig()).loc[0,
                   "read_lag_p99_ms"])  # fmt: skip


def test_a_generator_the_host_did_not_schedule_is_not_blamed_for_its_lag() -> None:
    """Late ticks while the process sat idle (a shared host running other work) are the host's
    doing: weighted by the process's CPU share over them, they stay under the bound."""
    rows = [record(0, 1.0 + i * 0.1) for i in range(80)]
    generator = pd.DataFrame(lag_samples(1, range(1, 10), [12.0, 9.0, 15.0], busy=0.1))
    summary = summarize(frame(rows), [stage(0, 0.0, 9.0)], INFO, SloConfig(), generator=generator)
    assert summary.loc[0, "valid"], summary.loc[0, "invalid_reason"]
    assert summary.loc[0, "loop_lag_p99_ms"] == pytest.approx(1.5)  # 15 ms × 0.1


def test_a_lagging_generator_retrying_refused_connections_is_told_to_fix_those_first() -> None:
    rows = [record(0, 1.0 + i * 0.1) for i in range(80)]
    rows += [record(0, 1.0, outcome=Outcome.CONNECT_ERROR) for _ in range(400)]
    generator = pd.DataFrame(lag_samples(1, range(1, 10), [40.0] * 5))
    summary = summarize(frame(rows), [stage(0, 0.0, 9.0)], INFO, SloConfig(), generator=generator)
    reasons = summary.loc[0, "invalid_reason"].split("; ")
    assert reasons[0].startswith("error rate 83.3% > 1.0% (400 connect_error): the target")
    assert reasons[-1] == (
        "load generator's own work held its event loop 40.0 ms at p99 (> 20 ms), busy with 400 "
        "failed connections: fix those first"
    )


def test_every_percentile_has_its_count_and_interval_and_failures_count_as_timeouts() -> None:
    rows = [record(0, 1.0 + i * 0.02, ttft=40.0 + i % 50) for i in range(300)]
    rows += [record(0, 1.0, outcome=Outcome.TIMEOUT_TTFT) for _ in range(30)]
    limits = AnalysisConfig(max_error_rate=0.5)
    summary = summarize(frame(rows), [stage(0, 0.0, 10.0)], INFO, SloConfig(), limits)
    row = summary.iloc[0]
    assert list(summary.columns[: len(DESIGN_COLUMNS)]) == DESIGN_COLUMNS
    assert (row["ttft_n"], row["ttft_all_n"], row["itl_n"]) == (300, 330, 300 * 9)
    for p in (50, 90, 95, 99):
        low, value, high = row[f"ttft_p{p}_lo_ms"], row[f"ttft_p{p}_ms"], row[f"ttft_p{p}_hi_ms"]
        assert low <= value <= high, p
    assert row["ttft_p95_ms"] < 90.0
    # 30 of 330 requests (9%) failed: the all-request p95 lands on a failure's 60 s timeout.
    assert row["ttft_p95_all_ms"] == 60_000.0 and row["ttft_p50_all_ms"] < 90.0
    assert row["e2e_p95_all_ms"] == 300_000.0
    assert row["error_rate"] == pytest.approx(30 / 330)
    assert row["output_tokens_mean"] == 10.0 and row["tpot_undefined"] == 0


def test_p99_needs_299_samples_and_one_token_outputs_are_counted() -> None:
    rows = [record(0, 1.0 + i * 0.05, tpot=12.0) for i in range(100)]
    rows[0]["output_tokens"], rows[0]["tpot_ms"] = 1, None
    summary = summarize(frame(rows), [stage(0, 0.0, 10.0)], INFO, SloConfig())
    row = summary.iloc[0]
    assert pd.isna(row["ttft_p99_ms"]) and pd.isna(row["ttft_p99_lo_ms"])
    assert row["ttft_n"] == 100 and row["tpot_n"] == 99 and row["tpot_undefined"] == 1


def test_several_targets_and_stages_are_grouped_not_mixed() -> None:
    rows = [record(s, 1.0 + s * 10 + i * 0.05, ttft=10.0 * (s + 1), target=t)
            for t in ("a", "b") for s in (0, 1) for i in range(80)]  # fmt: skip
    for r in rows:
        if r["target"] == "b":
            r["ttft_ms"] += 5.0
    stages = [
        stage(s, s * 10.0, s * 10.0 + 10.0).model_copy(update={"target": t})
        for t in ("a", "b")
        for s in (0, 1)
    ]
    info = {**INFO, "b": TargetInfo("b", "tgi", "awq", False)}
    summary = summarize(frame(rows), stages, info, SloConfig())
    assert list(summary["ttft_p50_ms"]) == [10.0, 20.0, 15.0, 25.0]
    assert list(summary["stack"]) == ["vllm", "vllm", "tgi", "tgi"]
    assert list(summary["requests"]) == [80, 80, 80, 80]


def test_no_records_gives_empty_stage_rows() -> None:
    empty = pd.DataFrame({c: pd.Series(dtype=object) for c in RequestRecord.model_fields})
    summary = summarize(empty, [stage(0, 0.0, 10.0)], INFO, SloConfig())
    row = summary.iloc[0]
    assert (row["requests"], row["ok"], row["req_per_s"]) == (0, 0, 0.0)
    assert not row["valid"] and "0 ok samples" in row["invalid_reason"]
