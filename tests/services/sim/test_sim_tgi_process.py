"""A real `python -m services.sim --stack tgi` process against the official clients."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from huggingface_hub import InferenceClient
from prometheus_client.parser import text_string_to_metric_families

from tests.procs import start_sim, stop_sim

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tgi() -> Iterator[tuple[subprocess.Popen[str], str]]:
    args = ("--stack", "tgi", "--quant", "awq", "--timing", "fixed", "--ttft-ms", "5")
    proc, url = start_sim(*args, "--itl-ms", "1", "--port", "0")
    yield proc, url
    code, err = stop_sim(proc)
    assert code == 0 and "Traceback" not in err, err


def test_hub_text_generation_stream_with_details(tgi: tuple[Any, str]) -> None:
    client = InferenceClient(base_url=tgi[1])
    outputs = list(
        client.text_generation("The quick brown fox", max_new_tokens=8, stream=True, details=True)
    )
    assert len(outputs) == 8 and [o.index for o in outputs] == list(range(1, 9))
    assert all(o.details is None and o.generated_text is None for o in outputs[:-1])
    last = outputs[-1]
    assert last.details is not None
    assert (last.details.finish_reason, last.details.generated_tokens) == ("length", 8)
    assert last.details.input_length == 4
    # `/` defaults return_full_text to true for a text-generation model: the prompt comes back.
    text = "".join(o.token.text for o in outputs)
    assert last.generated_text == "The quick brown fox" + text


def test_hub_text_generation_non_stream(tgi: tuple[Any, str]) -> None:
    client = InferenceClient(base_url=tgi[1])
    out = client.text_generation("Hello", max_new_tokens=8, details=True, return_full_text=False)
    assert out.details is not None and out.details.generated_tokens == 8
    assert len(out.details.tokens) == 8 and out.generated_text.count(" ") == 8


def test_hub_chat_stream_fails_on_tgis_done_line(tgi: tuple[Any, str]) -> None:
    """KNOWN CLIENT BUG, asserted on purpose (STACKS.md 2.6, huggingface_hub#4536).

    huggingface_hub 2.4's `_format_chat_completion_stream_output` ends a stream only on the exact
    line `data: [DONE]`; TGI (axum) writes `data:[DONE]`, which the client then hands to
    `json.loads`. Every chunk arrives first; the simulator keeps TGI's real framing.
    """
    client = InferenceClient(base_url=tgi[1])
    chunks = []
    with pytest.raises(json.JSONDecodeError):
        for chunk in client.chat_completion(
            [{"role": "user", "content": "Hi"}], max_tokens=8, stream=True
        ):
            chunks.append(chunk)
    assert len(chunks) == 8
    assert all(c.choices[0].delta.role == "assistant" for c in chunks), "no role-only chunk"
    assert [c.choices[0].finish_reason for c in chunks][-2:] == [None, "length"]


def test_openai_client_streams_chat_and_completions(tgi: tuple[Any, str]) -> None:
    client = openai.OpenAI(base_url=f"{tgi[1]}/v1", api_key="x", max_retries=0)
    chunks = list(
        client.chat.completions.create(
            model="tgi",
            messages=[{"role": "user", "content": "Hello!"}],
            max_tokens=4,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    contents = [c.choices[0].delta.content for c in chunks if c.choices]
    assert len(contents) == 4 and all(c and c.startswith(" ") for c in contents)
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 4
    completions = list(
        client.completions.create(model="tgi", prompt="Hi", max_tokens=3, stream=True)
    )
    assert [c.choices[0].finish_reason for c in completions] == ["", "", "length"]
    assert completions[-1].usage is not None and completions[-1].usage.total_tokens == 4


def _metric(url: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return None


def test_client_disconnect_is_counted_as_dropped(tgi: tuple[Any, str]) -> None:
    url = tgi[1]
    body = {"inputs": "Hi", "parameters": {"max_new_tokens": 2000}}
    with httpx.stream("POST", f"{url}/generate_stream", json=body, timeout=10) as resp:
        next(resp.iter_lines())
    deadline = time.monotonic() + 5.0
    while _metric(url, "tgi_request_failure_total", err="dropped") != 1.0:
        assert time.monotonic() < deadline, "the aborted stream was not counted"
        time.sleep(0.01)
    assert _metric(url, "tgi_batch_current_size") == 0.0


def test_profile_timing_serves_the_tgi_profiles(sim_process: Any) -> None:
    _, url = sim_process("--stack", "tgi", "--quant", "gptq", "--gpu", "l4")
    body = {"inputs": "Hello world", "parameters": {"max_new_tokens": 4}}
    resp = httpx.post(f"{url}/generate", json=body, timeout=10)
    assert resp.status_code == 200 and resp.headers["x-generated-tokens"] == "4"
    # l4 GPTQ profile: 24 ms + 1.3 ms per running sequence per decode step.
    assert int(resp.headers["x-time-per-token"]) >= 20
    assert _metric(url, "tgi_batch_max_total_tokens") == 100000.0
    assert httpx.get(f"{url}/info").json()["model_id"] == "sim/llama-3.1-8b-instruct-gptq"
