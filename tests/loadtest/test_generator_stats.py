import json
import re
from pathlib import Path

import httpx
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from loadtest.generator_stats import (
    EXPORTER_BIND_ENV,
    GENERATOR_FILE,
    ClientExporter,
    CpuSampler,
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
