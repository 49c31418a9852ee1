"""How long stages take to collect their samples, estimated before the run."""

import pytest

from loadtest.config import LoadConfig, SampleGoal, WorkloadConfig
from loadtest.records import Outcome, RequestRecord
from loadtest.sampling import estimate_stages, request_seconds


def test_one_slow_user_is_extended_and_warned_when_its_cap_is_too_short() -> None:
    load = LoadConfig(stages=[1, 8, 64], stage_duration=30, max_stage_duration=60)
    one, eight, many = estimate_stages(load, SampleGoal(), request_s=1.9)
    assert one.needs_s == pytest.approx(59 * 1.9) and one.capped
    assert "stage 1 (1 user) cannot plausibly collect the 59 ok samples a p95 needs" in (
        one.describe(1.9)
    )
    assert "~112 s" in one.describe(1.9)
    assert eight.needs_s == pytest.approx(59 * 1.9 / 8)  # 14 s: within its 30 s
    assert not eight.extended and eight.describe(1.9) == ""
    assert not many.extended and many.describe(1.9) == ""


def test_open_loop_collects_its_offered_rate() -> None:
    load = LoadConfig(mode="rate", stages=[0.5, 10], stage_duration=30)
    slow, fast = estimate_stages(load, SampleGoal(min_ok=299, percentile="p99"), 5.0)
    assert slow.needs_s == pytest.approx(598) and slow.extended and not slow.capped  # cap: 600 s
    assert "will run ~598 s instead of 30 s to collect the 299 ok samples a p99" in (
        slow.describe(5.0)
    )
    assert not fast.extended


def test_a_requests_time_is_the_probes_ttft_and_tpot_at_the_mean_output_length() -> None:
    probe = RequestRecord(target="t", stage=-1, mode="concurrency", load=1, outcome=Outcome.OK,
                          scheduled_ns=0, ttft_ms=100.0, tpot_ms=20.0, e2e_ms=5000.0)  # fmt: skip
    assert request_seconds(probe, WorkloadConfig(output_tokens=11)) == pytest.approx(0.3)
    no_tokens = probe.model_copy(update={"tpot_ms": None})
    assert request_seconds(no_tokens, WorkloadConfig()) == 5.0
