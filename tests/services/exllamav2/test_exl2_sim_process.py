"""A real `python -m services.sim --stack exllamav2` process: the official `openai` client,
health, version and metrics over HTTP."""

from __future__ import annotations

import httpx
import openai
from prometheus_client.parser import text_string_to_metric_families

MODEL = "sim/llama-3.1-8b-instruct-exl2"


def _client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)


def _generated_tokens(url: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    family = fams["exllamav2:generation_tokens"]
    assert family.type == "counter"
    [value] = [s.value for s in family.samples if s.name == "exllamav2:generation_tokens_total"]
    return float(value)


def test_openai_client_streams_completions_with_usage(exl2_sim_url: str) -> None:
    client = _client(exl2_sim_url)
    assert [m.id for m in client.models.list()] == [MODEL]
    chunks = list(
        client.completions.create(
            model=MODEL,
            prompt="The quick brown fox",
            max_tokens=5,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    texts = [c.choices[0].text for c in chunks if c.choices]
    assert len(texts) == 5 and all(t.startswith(" ") for t in texts)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (4, 5)


def test_openai_client_chat_streaming_and_not(exl2_sim_url: str) -> None:
    client = _client(exl2_sim_url)
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Hello!"}],
            max_completion_tokens=4,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    first = chunks[0].choices[0].delta
    assert (first.role, first.content) == ("assistant", "")
    assert len([c for c in chunks[1:] if c.choices]) == 4
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 9 + 4
    reply = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hello!"}], max_tokens=3
    )
    assert reply.choices[0].finish_reason == "length" and reply.usage is not None
    assert reply.usage.completion_tokens == 3


def test_health_version_and_counters_that_increase(exl2_sim_url: str) -> None:
    health = httpx.get(f"{exl2_sim_url}/health")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    assert httpx.get(f"{exl2_sim_url}/version").json()["engine"] == "simulated"
    before = _generated_tokens(exl2_sim_url)
    body = {"prompt": "x", "max_tokens": 7}
    assert httpx.post(f"{exl2_sim_url}/v1/completions", json=body).status_code == 200
    assert _generated_tokens(exl2_sim_url) == before + 7
