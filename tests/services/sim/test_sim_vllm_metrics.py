"""`/metrics` as Prometheus sees it: vLLM 0.33 names, labels and bucket bounds."""

from __future__ import annotations

import asyncio
import math
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from services.sim import BatchingEngine, EngineProfile
from services.sim.vllm_metrics import VllmMetrics, token_buckets

MODEL = "sim/llama-3.1-8b-instruct-awq"
TTFT_BOUNDS = [
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75,
    1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
]  # fmt: skip
HISTOGRAMS = [
    "vllm:time_to_first_token_seconds",
    "vllm:inter_token_latency_seconds",
    "vllm:request_time_per_output_token_seconds",
    "vllm:e2e_request_latency_seconds",
    "vllm:request_queue_time_seconds",
    "vllm:request_prefill_time_seconds",
    "vllm:request_decode_time_seconds",
    "vllm:request_inference_time_seconds",
    "vllm:request_prompt_tokens",
    "vllm:request_generation_tokens",
    "vllm:iteration_tokens_total",
]
GAUGES = ["vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc"]
COUNTERS = ["vllm:prompt_tokens", "vllm:generation_tokens", "vllm:num_preemptions"]


def _scrape(text: str) -> dict[str, list[Sample]]:
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def _value(samples: list[Sample], name: str, **labels: str) -> float:
    [value] = [s.value for s in samples if s.name == name and labels.items() <= s.labels.items()]
    return value


def test_metrics_names_labels_buckets_and_counts(with_client: Any) -> None:
    async def fn(client: Any, _: Any) -> tuple[str, str, str]:
        before = await (await client.get("/metrics")).text()
        body = {"prompt": "a b c", "max_tokens": 5, "stream": True}
        await (await client.post("/v1/completions", json=body)).read()
        resp = await client.get("/metrics")
        return resp.headers["Content-Type"], before, await resp.text()

    content_type, before_text, after_text = with_client(fn)
    assert content_type.startswith("text/plain")
    before, after = _scrape(before_text), _scrape(after_text)
    assert "process_start_time_seconds" in after and "python_info" in after
    for name in HISTOGRAMS + GAUGES + COUNTERS + ["vllm:request_success"]:
        assert name in after, name
        for sample in after[name]:
            assert sample.labels["model_name"] == MODEL and sample.labels["engine"] == "0"

    ttft = after["vllm:time_to_first_token_seconds"]
    bounds = [float(s.labels["le"]) for s in ttft if s.name.endswith("_bucket")]
    assert bounds == [*TTFT_BOUNDS, math.inf]
    assert _value(ttft, "vllm:time_to_first_token_seconds_count") == 1
    assert (
        _value(after["vllm:inter_token_latency_seconds"], "vllm:inter_token_latency_seconds_count")
        == 4
    )

    name = "vllm:request_success_total"
    assert _value(before["vllm:request_success"], name, finished_reason="length") == 0
    assert _value(after["vllm:request_success"], name, finished_reason="length") == 1
    assert _value(after["vllm:request_success"], name, finished_reason="abort") == 0
    assert _value(after["vllm:prompt_tokens"], "vllm:prompt_tokens_total") == 3
    assert _value(after["vllm:generation_tokens"], "vllm:generation_tokens_total") == 5
    assert _value(after["vllm:num_requests_running"], "vllm:num_requests_running") == 0

    tok = after["vllm:request_generation_tokens"]
    tok_bounds = [float(s.labels["le"]) for s in tok if s.name.endswith("_bucket")]
    assert tok_bounds == [*token_buckets(4096), math.inf]


def test_token_buckets_follow_the_1_2_5_series() -> None:
    assert token_buckets(4096) == [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000]
    assert token_buckets(5000)[-1] == 5000


def test_preemptions_are_counted(fake_clock: Any) -> None:
    registry = CollectorRegistry()
    metrics = VllmMetrics(registry, MODEL)
    profile = EngineProfile(
        max_num_seqs=8, max_num_batched_tokens=64, kv_cache_tokens=100, kv_allocation="on_demand",
        decode_step_base_ms=10, decode_step_per_seq_ms=1, prefill_ms_per_token=0.1,
    )  # fmt: skip

    async def main() -> None:
        engine = BatchingEngine(profile, metrics, clock=fake_clock, sleep=fake_clock.sleep)
        for seq in [engine.submit(20, 30) for _ in range(3)]:
            async for _ in seq:
                pass
        await engine.aclose()

    asyncio.run(main())
    after = _scrape(generate_latest(registry).decode())
    assert _value(after["vllm:num_preemptions"], "vllm:num_preemptions_total") == 1
    assert _value(after["vllm:generation_tokens"], "vllm:generation_tokens_total") == 90


def test_every_finished_request_gets_all_phases_and_one_token_a_tpot_of_0(
    with_client: Any,
) -> None:
    """v1/metrics/stats.py `update_from_finished_request`: queue, prefill, decode, inference
    and TPOT are observed when a request finishes, for every one of them; TPOT is
    decode / (tokens - 1), or 0 for a single token."""

    async def fn(client: Any, _: Any) -> str:
        await (await client.post("/v1/completions", json={"prompt": "a", "max_tokens": 1})).read()
        return await (await client.get("/metrics")).text()

    samples = _scrape(with_client(fn))
    for name in ("queue_time", "prefill_time", "decode_time", "inference_time"):
        family = f"vllm:request_{name}_seconds"
        assert _value(samples[family], family + "_count") == 1, name
    tpot = "vllm:request_time_per_output_token_seconds"
    assert _value(samples[tpot], tpot + "_count") == 1
    assert _value(samples[tpot], tpot + "_sum") == 0.0
