from analysis.config import AnalysisConfig, SloConfig
from analysis.validity import StageEvidence, invalid_reasons, samples_needed

LIMITS = AnalysisConfig()


def test_a_healthy_stage_is_valid() -> None:
    assert invalid_reasons(StageEvidence("concurrency", requests=100, ok=100), LIMITS) == []


def test_an_error_rate_above_the_limit_makes_the_stage_invalid() -> None:
    evidence = StageEvidence("concurrency", 100, 98, {"http_error": 2})
    assert invalid_reasons(evidence, LIMITS) == ["error rate 2.0% > 1.0% (2 http_error)"]
    assert invalid_reasons(evidence, AnalysisConfig(max_error_rate=0.05)) == []


def test_connection_errors_are_named_as_the_cause_not_the_generators_cpu() -> None:
    """A dead port: the generator retries tens of thousands of refused connections and gets
    busy. The reason says connection errors first, and the CPU as their symptom."""
    evidence = StageEvidence(
        "concurrency",
        requests=46_308,
        ok=40,
        failures={"connect_error": 46_268},
        generator_cpu_percent=99.0,
    )
    first, samples, cpu = invalid_reasons(evidence, LIMITS)
    assert first == (
        "error rate 99.9% > 1.0% (46,268 connect_error): the target refused or dropped connections"
    )
    assert samples == "40 ok samples, p95 needs 59"
    assert cpu.startswith("load generator at 99% CPU (> 90%), busy with 46,268 failed")
    assert "add" not in cpu and "processes" not in cpu


def test_a_busy_generator_without_errors_is_blamed() -> None:
    evidence = StageEvidence("concurrency", 100, 100, generator_cpu_percent=95.0)
    (reason,) = invalid_reasons(evidence, LIMITS)
    assert reason.startswith("load generator at 95% CPU (> 90%): timings unreliable")


def test_a_lagging_event_loop_is_named_before_the_cpu_and_after_connection_errors() -> None:
    lagging = StageEvidence("rate", 100, 100, loop_lag_p99_ms=25.0, generator_cpu_percent=95.0)
    lag, cpu = invalid_reasons(lagging, LIMITS)
    assert lag.startswith("load generator's own work held its event loop 25.0 ms at p99 (> 20 ms)")
    assert cpu.startswith("load generator at 95% CPU")
    assert invalid_reasons(lagging, AnalysisConfig(max_loop_lag_p99_ms=30,
                                                   max_generator_cpu_percent=99)) == []  # fmt: skip
    storm = StageEvidence("rate", 1000, 10, {"connect_error": 990}, loop_lag_p99_ms=50.0)
    reasons = invalid_reasons(storm, LIMITS)
    assert reasons[0].endswith("the target refused or dropped connections")
    assert reasons[-1].endswith("busy with 990 failed connections: fix those first")


def test_run_breaks_come_before_what_the_target_did() -> None:
    evidence = StageEvidence(
        "rate", 100, 50, {"timeout_ttft": 50}, completed=False, restart="counters reset"
    )
    reasons = invalid_reasons(evidence, LIMITS)
    assert reasons[:3] == [
        "stage stopped before its end",
        "server restarted (counters reset)",
        "error rate 50.0% > 1.0% (50 timeout_ttft)",
    ]


def test_the_samples_a_stage_needs_follow_the_slos_percentiles() -> None:
    assert samples_needed(SloConfig(), LIMITS) == (59, "p95")
    assert samples_needed(SloConfig(), AnalysisConfig(min_samples_p95=20)) == (20, "p95")
    assert samples_needed(SloConfig(tpot_percentile=99), LIMITS) == (299, "p99")
    evidence = StageEvidence("concurrency", 200, 200)
    assert invalid_reasons(evidence, LIMITS, SloConfig(percentile=99)) == [
        "200 ok samples, p99 needs 299"
    ]


def test_a_stage_that_ran_to_its_cap_says_so() -> None:
    evidence = StageEvidence("concurrency", 12, 12, capped_s=600.0)
    assert invalid_reasons(evidence, LIMITS) == [
        "12 ok samples, p95 needs 59 (not reached within load.max_stage_duration, 600 s)"
    ]
