import json
import re
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from loadtest.generator_stats import (
    EXPORTER_BIND_ENV,
    GENERATOR_FILE,
    LOOP_LATE_MS,
    ClientExporter,
    CpuSampler,
    LoopLagProbe,
    bind_address,
)
from loadtest.records import Outcome, RequestRecord


def record(outcome: Outcome, ttft_ms: float | None = None) -> RequestRecord:
    done = ttft_ms is not None
    return RequestRecord(
        target="awq", stage=0, mode="rate", load=1.0, outcome=outcome, scheduled_ns=0,
        ttft_ms=ttft_ms, tpot_ms=12.0 if done else None, e2e_ms=900.0 if done else None,
        output_tokens=64 if done else 0,
    )  # fmt: skip


def test_exporter_counts_outcomes_and_observes_client_latencies() -> None:
    exporter = ClientExporter()
    exporter.observe(record(Outcome.OK, ttft_ms=45.0))
    exporter.observe(record(Outcome.OK, ttft_ms=300.0))
    exporter.observe(record(Outcome.HTTP_ERROR))
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(generate_latest(exporter.registry).decode())
        for s in family.samples
    }
    assert (
        samples[("quantbench_client_requests_total", (("outcome", "ok"), ("target", "awq")))] == 2
    )
    key = ("quantbench_client_requests_total", (("outcome", "http_error"), ("target", "awq")))
    assert samples[key] == 1
    assert samples[("quantbench_client_ttft_seconds_count", (("target", "awq"),))] == 2
    le_50ms = ("quantbench_client_ttft_seconds_bucket", (("le", "0.06"), ("target", "awq")))
    assert samples[le_50ms] == 1
    assert samples[("quantbench_client_output_tokens_total", (("target", "awq"),))] == 128


def test_cpu_sampler_appends_one_line_per_sample(tmp_path: Path) -> None:
    sampler = CpuSampler(tmp_path)
    sampler.sample()
    sampler.sample()
    lines = [json.loads(line) for line in (tmp_path / GENERATOR_FILE).read_text().splitlines()]
    assert len(lines) == 2 and {"pid", "wall_s", "cpu_percent"} <= lines[0].keys()


def test_the_lag_probe_keeps_every_late_tick_and_counts_the_rest() -> None:
    probe = LoopLagProbe(interval_s=0.01)
    probe.woke(due_s=1.0, now_s=1.0002)  # 0.2 ms: on time, only counted
    probe.woke(due_s=2.0, now_s=2.0125, busy=0.25)  # 12.5 ms late, a quarter of it on CPU
    assert probe.take() == {"loop_ticks": 2, "loop_late_ms": [12.5], "loop_busy": [0.25]}
    assert probe.take() == {"loop_ticks": 0, "loop_late_ms": [], "loop_busy": []}
    assert LOOP_LATE_MS == 1.0


def test_a_greenlet_that_holds_the_loop_shows_as_lag() -> None:
    """A busy-loop greenlet (a saturated generator in miniature) keeps the hub from waking the
    probe. It holds the loop for 60 ms of *CPU* time, so whatever else the host runs, the tick
    around it lasts W ≥ 60 ms of which ≥ 60 ms on the CPU: late by W − 5 ms, busy ≥ 60/W, and
    held (late × busy) ≥ 55 ms — a bound the host's load cannot break."""
    import gevent

    clock = time.process_time
    probe = LoopLagProbe(interval_s=0.005)

    def hold(seconds: float) -> None:
        end = clock() + seconds
        while clock() < end:
            pass  # never yields

    runner = gevent.spawn(probe.run, gevent.sleep)
    gevent.sleep(0.02)
    for _ in range(3):
        hold(0.06)
        gevent.sleep(0.01)
    runner.kill()
    seen = probe.take()
    late = sorted(seen["loop_late_ms"], reverse=True)  # type: ignore[call-overload]
    assert len(late) >= 3 and late[2] >= 55.0, seen
    pairs = zip(seen["loop_late_ms"], seen["loop_busy"], strict=True)  # type: ignore[call-overload]
    held = sorted((ms * busy for ms, busy in pairs), reverse=True)
    assert held[2] >= 50.0, seen  # 55 ms less the rounding of busy to 3 places


def test_cpu_sampler_writes_the_loop_lag_beside_the_cpu(tmp_path: Path) -> None:
    probe = LoopLagProbe()
    probe.woke(0.0, 0.02)
    CpuSampler(tmp_path, probe).sample()
    (line,) = [json.loads(x) for x in (tmp_path / GENERATOR_FILE).read_text().splitlines()]
    assert (line["loop_ticks"], line["loop_late_ms"], line["loop_busy"]) == (1, [20.0], [1.0])


@pytest.mark.parametrize(
    ("bind", "expected"),
    [
        ("", ("127.0.0.1", 9647)),
        ("0.0.0.0:9646", ("0.0.0.0", 9646)),
        ("0.0.0.0", ("0.0.0.0", 9647)),
        ("[::]:9646", ("::", 9646)),
        ("[::]", ("::", 9647)),
    ],
)
def test_the_exporter_binds_loopback_unless_asked(bind: str, expected: tuple[str, int]) -> None:
    assert bind_address(9647, environ={EXPORTER_BIND_ENV: bind}) == expected


def test_a_bad_bind_address_names_the_variable() -> None:
    with pytest.raises(ValueError, match=re.escape("QUANTBENCH_EXPORTER_BIND='0.0.0.0:http'")):
        bind_address(9646, environ={EXPORTER_BIND_ENV: "0.0.0.0:http"})


def test_the_exporter_serves_where_the_environment_says(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(EXPORTER_BIND_ENV, "127.0.0.1:0")
    exporter = ClientExporter()
    exporter.observe(record(Outcome.OK, ttft_ms=45.0))
    port = exporter.serve(9646)  # the variable's port (0: any free one) replaces 9646
    assert port not in (0, 9646)
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert 'quantbench_client_requests_total{outcome="ok",target="awq"} 1.0' in text
