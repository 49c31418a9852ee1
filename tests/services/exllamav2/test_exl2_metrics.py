"""The `exllamav2:` Prometheus series: names, labels, vLLM's buckets, a scripted clock."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from services.exllamav2.engine import JobStats
from services.exllamav2.metrics import (
    ITL_BUCKETS,
    REQUEST_LATENCY_BUCKETS,
    TTFT_BUCKETS,
    Exl2Metrics,
    token_buckets,
)
from services.sim import vllm_metrics
from tests.services.exllamav2.conftest import MODEL, Client, FakeEngine, run_app

_HISTOGRAMS = {
    "exllamav2:time_to_first_token_seconds": TTFT_BUCKETS,
    "exllamav2:inter_token_latency_seconds": ITL_BUCKETS,
    "exllamav2:e2e_request_latency_seconds": REQUEST_LATENCY_BUCKETS,
    "exllamav2:request_queue_time_seconds": REQUEST_LATENCY_BUCKETS,
    "exllamav2:request_prefill_time_seconds": REQUEST_LATENCY_BUCKETS,
    "exllamav2:request_decode_time_seconds": REQUEST_LATENCY_BUCKETS,
}
_COUNTERS = ("exllamav2:prompt_tokens", "exllamav2:generation_tokens", "exllamav2:request_success")
_GAUGES = (
    "exllamav2:num_requests_running",
    "exllamav2:num_requests_waiting",
    "exllamav2:kv_cache_usage_perc",
)


def families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def sample(fams: dict[str, Any], family: str, name: str, **labels: str) -> float:
    [value] = [
        s.value
        for s in fams[family].samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    return float(value)


def test_bucket_families_are_vllms() -> None:
    assert TTFT_BUCKETS == vllm_metrics.TTFT_BUCKETS
    assert ITL_BUCKETS == vllm_metrics.ITL_BUCKETS
    assert REQUEST_LATENCY_BUCKETS == vllm_metrics.REQUEST_LATENCY_BUCKETS
    assert token_buckets(4096) == vllm_metrics.token_buckets(4096)


def test_scrape_shows_names_labels_buckets_and_counters_that_increase() -> None:
    async def fn(client: Client, *_: Any) -> list[str]:
        texts = [await (await client.get("/metrics")).text()]
        for _ in range(2):
            body = {"prompt": "a b c", "max_tokens": 3, "stream": True}
            await (await client.post("/v1/completions", json=body)).read()
            texts.append(await (await client.get("/metrics")).text())
        return texts

    before, once, twice = (families(t) for t in run_app(fn))
    for name, bounds in _HISTOGRAMS.items():
        assert once[name].type == "histogram"
        les = [s.labels["le"] for s in once[name].samples if s.name == f"{name}_bucket"]
        assert les == [*(repr(float(b)) for b in bounds), "+Inf"], name
        assert all(s.labels["model_name"] == MODEL for s in once[name].samples)
        per_request = 2.0 if "inter_token" in name else 1.0  # 3 tokens: 2 gaps
        assert sample(once, name, f"{name}_count") == per_request, name
    for name in _COUNTERS:
        assert once[name].type == "counter"
    for name in _GAUGES:
        assert once[name].type == "gauge" and sample(once, name, name, model_name=MODEL) == 0.0
    gen = "exllamav2:generation_tokens"
    assert [sample(f, gen, f"{gen}_total") for f in (before, once, twice)] == [0.0, 3.0, 6.0]
    prompt = "exllamav2:prompt_tokens"
    assert sample(twice, prompt, f"{prompt}_total") == 2 * 4.0  # BOS + 3 words, twice
    ok = "exllamav2:request_success"
    reasons = {s.labels["finished_reason"] for s in once[ok].samples}
    assert reasons == {"stop", "length", "abort", "error"}, "all children exist from the start"
    assert sample(twice, ok, f"{ok}_total", finished_reason="length") == 2.0
    itl = "exllamav2:inter_token_latency_seconds"
    assert sample(twice, itl, f"{itl}_count") == 2 * 2.0, "one gap per streamed result"
    assert "process_start_time_seconds" in once


class _Gauges:
    def __init__(self) -> None:
        self.running, self.kv = 0, 0.0

    def num_running_jobs(self) -> int:
        return self.running

    def num_pending_jobs(self) -> int:
        raise RuntimeError("not loaded")

    def kv_cache_usage(self) -> float:
        return self.kv


def test_gauges_are_read_from_the_engine_at_scrape_time() -> None:
    source, registry = _Gauges(), CollectorRegistry()
    Exl2Metrics(registry, MODEL, source)
    source.running, source.kv = 2, float("nan")
    labels = {"model_name": MODEL}
    assert registry.get_sample_value("exllamav2:num_requests_running", labels) == 2.0
    assert registry.get_sample_value("exllamav2:kv_cache_usage_perc", labels) == 0.0, "nan -> 0"
    assert registry.get_sample_value("exllamav2:num_requests_waiting", labels) == 0.0
    source.kv = 0.25
    assert registry.get_sample_value("exllamav2:kv_cache_usage_perc", labels) == 0.25


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_request_meter_with_a_scripted_clock() -> None:
    clock = _Clock()
    registry = CollectorRegistry()
    metrics = Exl2Metrics(registry, MODEL, FakeEngine(), clock=clock)
    meter = metrics.start(prompt_tokens=7)
    for t, n in ((100.050, 1), (100.060, 0), (100.075, 2), (100.090, 1)):
        clock.now = t
        meter.on_tokens(n)
    stats = JobStats("stop_token", 5, 7, 0, 0.01, 0.04, 0.04)  # one more: the unstreamed EOS
    meter.finish("abort", stats)
    meter.finish("error")  # a second finish is ignored
    value = registry.get_sample_value
    labels = {"model_name": MODEL}
    ttft = value("exllamav2:time_to_first_token_seconds_sum", labels)
    itl = value("exllamav2:inter_token_latency_seconds_sum", labels)
    e2e = value("exllamav2:e2e_request_latency_seconds_sum", labels)
    assert ttft is not None and itl is not None and e2e is not None
    assert e2e == pytest.approx(ttft + itl, abs=1e-6), "e2e = ttft + sum(itl) when eos is last"
    assert value("exllamav2:inter_token_latency_seconds_count", labels) == 2.0
    assert value("exllamav2:generation_tokens_total", labels) == 5.0
    assert value("exllamav2:prompt_tokens_total", labels) == 7.0
    assert value("exllamav2:request_success_total", labels | {"finished_reason": "stop"}) == 1.0
    assert value("exllamav2:request_success_total", labels | {"finished_reason": "abort"}) == 0.0
    assert value("exllamav2:request_time_per_output_token_seconds_sum", labels) == pytest.approx(
        0.01
    )
