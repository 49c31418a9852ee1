"""TGI's `/metrics` page: exporter layout, exact bucket bounds, and what each request records."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from services.sim import BatchingEngine, load_profile
from services.sim.tgi_metrics import BATCH_SIZE_BUCKETS, DURATION_BUCKETS, TgiMetrics, token_buckets
from services.sim.tgi_protocol import rust_float
from tests.services.sim.test_sim_tgi_app import Client, run_tgi

REQUEST_HISTOGRAMS = {
    "tgi_request_duration": "dur",
    "tgi_request_validation_duration": "dur",
    "tgi_request_queue_duration": "dur",
    "tgi_request_inference_duration": "dur",
    "tgi_request_mean_time_per_token_duration": "dur",
    "tgi_request_generated_tokens": "tot",
    "tgi_request_input_length": "in",
    "tgi_request_max_new_tokens": "tot",
    "tgi_batch_next_size": "bs",
    "tgi_batch_forward_duration": "dur",
    "tgi_batch_inference_duration": "dur",
}


@pytest.mark.parametrize(
    ("value", "text"),
    [(1.0, "1"), (0.1, "0.1"), (1e-7, "0.0000001"), (1e16, "10000000000000000"), (0.0, "0")],
)
def test_rust_float_display(value: float, text: str) -> None:
    assert rust_float(value) == text


def test_bucket_bounds_are_tgis() -> None:
    assert len(DURATION_BUCKETS) == 35
    assert rust_float(DURATION_BUCKETS[0]) == "0.00015000000000000001", "0.0001 * 1.5, in f64"
    assert rust_float(DURATION_BUCKETS[-1]) == "145.61096060497135"
    assert all(b / a == pytest.approx(1.5) for a, b in itertools.pairwise(DURATION_BUCKETS))
    assert token_buckets(4096)[0] == 40.96 and token_buckets(4096)[-1] == 4096.0
    assert len(token_buckets(4095)) == 100
    assert tuple(float(n) for n in range(1, 1025)) == BATCH_SIZE_BUCKETS


def _parse(text: str) -> dict[str, Any]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def _value(families: dict[str, Any], name: str, sample: str, **labels: str) -> float | None:
    for s in families[name].samples:
        if s.name == sample and s.labels == labels:
            return float(s.value)
    return None


def _bounds(samples: list[Sample]) -> list[str]:
    return [s.labels["le"] for s in samples if s.name.endswith("_bucket")]


def test_fresh_page_has_only_the_token_budget() -> None:
    async def fn(client: Client) -> tuple[str, str]:
        resp = await client.get("/metrics")
        return resp.headers["Content-Type"], await resp.text()

    content_type, text = run_tgi(fn, max_concurrent_requests=4, max_model_len=1024)
    assert content_type == "text/plain; charset=utf-8"
    assert text == "# TYPE tgi_batch_max_total_tokens gauge\ntgi_batch_max_total_tokens 4096\n\n"


def test_page_after_traffic_parses_with_exact_names_and_buckets() -> None:
    async def fn(client: Client) -> str:
        body = {"inputs": "Hello world", "parameters": {"max_new_tokens": 3}}
        await (await client.post("/generate_stream", json=body)).read()
        await (await client.post("/generate", json=body)).read()
        chat = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
        await (await client.post("/v1/chat/completions", json=chat)).read()
        bad = {"inputs": "x", "parameters": {"max_new_tokens": 9999}}  # 1 + 1024 > 1024
        await (await client.post("/generate", json=bad)).read()
        return await (await client.get("/metrics")).text()

    text = run_tgi(fn, max_model_len=1024)
    assert "\ntgi_request_count 5\n" in text, "counters are written as named: no `_total`"
    assert "_created" not in text and "tgi_request_success 3\n" in text
    families = _parse(text)
    assert not [n for n in families if not n.startswith("tgi_")], "no process/python series"
    types = {name: f.type for name, f in families.items()}
    assert types == {
        "tgi_request_count": "counter",
        "tgi_request_success": "counter",
        "tgi_request_failure": "counter",
        "tgi_batch_inference_count": "counter",
        "tgi_batch_inference_success": "counter",
        "tgi_batch_current_size": "gauge",
        "tgi_batch_current_max_tokens": "gauge",
        "tgi_batch_max_total_tokens": "gauge",
        "tgi_queue_size": "gauge",
        **dict.fromkeys(REQUEST_HISTOGRAMS, "histogram"),
    }
    expected = {
        "dur": [rust_float(b) for b in DURATION_BUCKETS],
        "in": [rust_float(b) for b in token_buckets(1023)],
        "tot": [rust_float(b) for b in token_buckets(1024)],
        "bs": [rust_float(b) for b in BATCH_SIZE_BUCKETS],
    }
    for name, kind in REQUEST_HISTOGRAMS.items():
        samples = [s for s in families[name].samples if s.labels.get("method") in (None, "decode")]
        assert _bounds(samples) == [*expected[kind], "+Inf"], name
    # The parser reports counters as `<name>_total`; the page itself has no suffix (see above).
    count = _value(families, "tgi_request_count", "tgi_request_count_total")
    assert count == 5, "4 requests; chat is counted twice (its handler and generate_internal)"
    assert _value(families, "tgi_request_success", "tgi_request_success_total") == 3
    failed = _value(families, "tgi_request_failure", "tgi_request_failure_total", err="validation")
    assert failed == 1
    assert _value(families, "tgi_request_generated_tokens", "tgi_request_generated_tokens_sum") == 8
    inputs = _value(families, "tgi_request_input_length", "tgi_request_input_length_count")
    assert inputs == 3, "input length is recorded by validation, which the bad request failed"
    prefill = _value(
        families, "tgi_batch_inference_count", "tgi_batch_inference_count_total", method="prefill"
    )
    assert prefill == 3
    assert _value(families, "tgi_batch_current_size", "tgi_batch_current_size") == 0


def test_batch_series_follow_engine_steps(clock_factory: Any) -> None:
    clock = clock_factory()

    async def main() -> str:
        metrics = TgiMetrics(max_input_tokens=4095, max_total_tokens=4096)
        profile = load_profile("tgi", "awq", "h100")
        engine = BatchingEngine(profile, metrics, clock=clock, sleep=clock.sleep)
        first, second = engine.submit(100, 3), engine.submit(50, 3)
        for seq in (first, second):
            async for _ in seq:
                pass
        await engine.aclose()
        return metrics.render()

    families = _parse(asyncio.run(main()))
    # Step 1 admits and prefills both (150 tokens), steps 2 and 3 decode both.
    assert _value(families, "tgi_batch_next_size", "tgi_batch_next_size_sum") == 2
    assert _value(families, "tgi_batch_next_size", "tgi_batch_next_size_count") == 1
    calls = {
        m: _value(
            families, "tgi_batch_inference_count", "tgi_batch_inference_count_total", method=m
        )
        for m in ("prefill", "decode")
    }
    assert calls == {"prefill": 1, "decode": 2}
    forward = {
        m: _value(
            families, "tgi_batch_forward_duration", "tgi_batch_forward_duration_sum", method=m
        )
        for m in ("prefill", "decode")
    }
    assert forward["prefill"] == pytest.approx((5.0 + 0.06 * 150) / 1000), "one prefill step"
    assert forward["decode"] == pytest.approx(2 * (5.0 + 0.23 * 2) / 1000), "two decode steps"
    assert _value(families, "tgi_batch_current_max_tokens", "tgi_batch_current_max_tokens") == 0


def test_disconnect_counts_a_dropped_request() -> None:
    async def fn(client: Client) -> float | None:
        body = {"inputs": "Hi", "parameters": {"max_new_tokens": 1000}}
        resp = await client.post("/generate_stream", json=body)
        await resp.content.readline()
        resp.close()
        for _ in range(500):
            families = _parse(await (await client.get("/metrics")).text())
            if "tgi_request_failure" in families:
                return _value(
                    families, "tgi_request_failure", "tgi_request_failure_total", err="dropped"
                )
            await asyncio.sleep(0.01)
        return None

    assert run_tgi(fn, itl_ms=2.0) == 1.0
