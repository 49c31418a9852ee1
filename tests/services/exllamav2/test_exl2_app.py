"""`create_app` over a hand-written fake engine: OpenAI conformance, errors, cancellation."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import openai
import pytest
from prometheus_client import CollectorRegistry

from services.exllamav2 import AppConfig, Exl2ConfigError, create_app
from tests.services.exllamav2.conftest import MODEL, Client, FakeEngine, run_app
from tests.services.openai_conformance import check_chat, check_completions


def _openai(client: Client) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=str(client.make_url("/v1")), api_key="x", max_retries=0)


def _events(body: bytes) -> list[bytes]:
    assert body.endswith(b"\n\n"), body[-40:]
    return [e + b"\n\n" for e in body[:-2].split(b"\n\n")]


def test_the_shared_openai_conformance_checks_pass_over_the_fake_engine() -> None:
    """The very checks the vLLM simulator passes (tests/services/openai_conformance.py)."""

    async def fn(client: Client, *_: Any) -> None:
        url = str(client.make_url("")).rstrip("/")
        await asyncio.to_thread(check_completions, url, MODEL, 5)  # BOS + 4 words
        await asyncio.to_thread(check_chat, url, MODEL, 4)  # template ids + role + 1 word

    run_app(fn)


def test_openai_client_streams_completions_with_usage() -> None:
    async def fn(client: Client, *_: Any) -> list[Any]:
        oai = _openai(client)
        stream = await oai.completions.create(
            model=MODEL,
            prompt="The quick brown fox",
            max_tokens=5,
            stream=True,
            stream_options={"include_usage": True},
        )
        return [chunk async for chunk in stream]

    chunks = run_app(fn)
    texts = [c.choices[0].text for c in chunks if c.choices]
    assert texts == [" w1", " w2", " w3", " w4", " w5"]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (5, 5)


def test_openai_client_chat_role_first_then_content_and_non_streaming() -> None:
    async def fn(client: Client, *_: Any) -> tuple[list[Any], Any]:
        oai = _openai(client)
        messages: Any = [{"role": "user", "content": "Hello there"}]
        stream = await oai.chat.completions.create(
            model=MODEL,
            messages=messages,
            max_completion_tokens=4,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
        reply = await oai.chat.completions.create(model=MODEL, messages=messages, max_tokens=3)
        return chunks, reply

    chunks, reply = run_app(fn)
    first = chunks[0].choices[0].delta
    assert (first.role, first.content) == ("assistant", ""), "vLLM's role-only first chunk"
    contents = [c.choices[0].delta.content for c in chunks[1:] if c.choices]
    assert len(contents) == 4 and chunks[-2].choices[0].finish_reason == "length"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4
    assert chunks[-1].usage.prompt_tokens == 2 + 1 + 2  # template ids + role id + two words
    assert reply.choices[0].message.content == " w1 w2 w3"
    assert reply.choices[0].finish_reason == "length" and reply.usage is not None
    assert reply.usage.completion_tokens == 3


def test_framing_is_openai_vllm_style_not_tabbyapi() -> None:
    async def fn(client: Client, *_: Any) -> tuple[str, bytes]:
        body = {"prompt": "a b", "max_tokens": 2, "stream": True}
        resp = await client.post("/v1/completions", json=body)
        return resp.headers["Content-Type"], await resp.read()

    content_type, body = run_app(fn)
    assert content_type.startswith("text/event-stream")
    assert b"\r" not in body and body.endswith(b"data: [DONE]\n\n")
    events = _events(body)
    assert all(e.startswith(b"data: ") for e in events) and len(events) == 3
    last = json.loads(events[1].removeprefix(b"data: "))
    assert list(last) == ["id", "object", "created", "model", "choices"], "usage absent, not null"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({}, (3, "stop")),  # the model stops after 2 tokens; the EOS token is counted
        ({"ignore_eos": True}, (6, "length")),
        ({"min_tokens": 6}, (6, "length")),
        ({"min_tokens": 4}, (5, "stop")),
    ],
)
def test_ignore_eos_and_min_tokens_pin_the_output_length(
    extra: dict[str, Any], expected: tuple[int, str]
) -> None:
    async def fn(client: Client, *_: Any) -> Any:
        body = {"prompt": "x", "max_tokens": 6, **extra}
        return await (await client.post("/v1/completions", json=body)).json()

    out = run_app(fn, FakeEngine(eos_after=2))
    assert (out["usage"]["completion_tokens"], out["choices"][0]["finish_reason"]) == expected


def test_errors_are_openai_shaped_with_the_http_status() -> None:
    async def fn(client: Client, *_: Any) -> list[tuple[int, Any]]:
        bodies: list[tuple[str, Any]] = [
            ("/v1/completions", {"prompt": "x", "stream_options": {"include_usage": True}}),
            ("/v1/completions", {"prompt": "x", "model": "nope"}),
            ("/v1/completions", {"prompt": "w " * 70, "max_tokens": 1}),
            ("/v1/completions", {"prompt": "x", "max_tokens": 70}),
            ("/v1/completions", {"prompt": "x", "max_tokens": 2, "min_tokens": 3}),
            ("/v1/chat/completions", {"messages": []}),
            ("/v1/completions", {"prompt": "x", "n": 2}),
        ]
        out = []
        for path, body in bodies:
            resp = await client.post(path, json=body)
            out.append((resp.status, await resp.json()))
        resp = await client.post("/v1/completions", data=b"{not json")
        out.append((resp.status, await resp.json()))
        resp = await client.get("/v1/nothing-here")
        out.append((resp.status, await resp.json()))
        return out

    results = run_app(fn)
    assert [s for s, _ in results] == [400, 404, 400, 400, 400, 400, 400, 400, 404]
    for status, body in results:
        assert list(body) == ["error"]
        assert list(body["error"]) == ["message", "type", "param", "code"]
        assert body["error"]["code"] == status
    assert "stream=True" in results[0][1]["error"]["message"]
    assert results[1][1]["error"]["message"] == "The model `nope` does not exist."
    assert "maximum context length is 64" in results[2][1]["error"]["message"]


def test_engine_failure_mid_stream_is_an_error_event_then_done() -> None:
    async def fn(client: Client, registry: CollectorRegistry, _: Any) -> tuple[bytes, Any, Any]:
        body = {"prompt": "x", "max_tokens": 5, "stream": True}
        streamed = await (await client.post("/v1/completions", json=body)).read()
        resp = await client.post("/v1/completions", json={"prompt": "x", "max_tokens": 5})
        labels = {"model_name": MODEL, "finished_reason": "error"}
        errors = registry.get_sample_value("exllamav2:request_success_total", labels)
        return streamed, (resp.status, await resp.json()), errors

    streamed, (status, body), errors = run_app(fn, FakeEngine(fail_after=2))
    events = _events(streamed)
    assert len(events) == 4 and events[-1] == b"data: [DONE]\n\n"
    error = json.loads(events[2].removeprefix(b"data: "))
    assert list(error) == ["error"] and error["error"]["code"] == 500
    assert "illegal memory access" in error["error"]["message"]
    assert status == 500 and body["error"]["type"] == "InternalServerError"
    assert errors == 2.0


def test_client_disconnect_cancels_the_job_and_counts_an_abort() -> None:
    async def fn(client: Client, registry: CollectorRegistry, engine: FakeEngine) -> Any:
        body = {"prompt": "x", "max_tokens": 60, "stream": True}
        resp = await client.post("/v1/completions", json=body)
        await resp.content.readline()  # the first event arrived
        resp.close()  # drop the connection mid-stream
        labels = {"model_name": MODEL, "finished_reason": "abort"}
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            aborted = registry.get_sample_value("exllamav2:request_success_total", labels)
            if aborted and engine.jobs[0].cancelled:
                return aborted, engine.jobs[0].cancelled
            await asyncio.sleep(0.005)
        return None

    assert run_app(fn, FakeEngine(itl_s=0.01)) == (1.0, True)


def test_health_is_503_until_loaded_and_generation_refused_meanwhile() -> None:
    async def fn(client: Client, _: CollectorRegistry, engine: FakeEngine) -> list[Any]:
        out = []
        for _ in range(2):
            health = await client.get("/health")
            gen = await client.post("/v1/completions", json={"prompt": "x", "max_tokens": 1})
            out.append((health.status, await health.json(), gen.status))
            engine.loaded = True
        return out

    before, after = run_app(fn, FakeEngine(loaded=False))
    assert before == (503, {"status": "loading"}, 503)
    assert after == (200, {"status": "ok"}, 200)


def test_info_routes() -> None:
    async def fn(client: Client, *_: Any) -> dict[str, Any]:
        paths = ("/v1/models", "/version", "/info")
        out = {p: await (await client.get(p)).json() for p in paths}
        tok = await client.post("/v1/token/encode", json={"text": "one two three"})
        out["encode"] = await tok.json()
        return out

    out = run_app(fn)
    assert out["/info"] == {
        "model": MODEL,
        "version": "0.1.0",
        "engine": "fake 1.0",
        "loaded": True,
        "max_seq_len": 64,
        "cache_size_tokens": 640,  # what quantbench's probe records in run.json
    }
    [card] = out["/v1/models"]["data"]
    assert (card["id"], card["object"], card["max_model_len"]) == (MODEL, "model", 64)
    assert out["/version"] == {"version": "0.1.0", "engine": "fake 1.0"}
    assert out["encode"] == {"tokens": [1, 3, 3, 5], "length": 4}


def test_api_key_from_the_named_environment_variable() -> None:
    async def fn(client: Client, *_: Any) -> list[int]:
        statuses = [(await client.get("/v1/models")).status]
        for headers in ({"Authorization": "Bearer s3cret"}, {"x-api-key": "s3cret"}):
            statuses.append((await client.get("/v1/models", headers=headers)).status)
        statuses.append((await client.get("/v1/models", headers={"x-api-key": "no"})).status)
        statuses.append((await client.get("/health")).status)
        return statuses

    config = AppConfig(api_key_env="QB_EXL2_KEY")
    assert run_app(fn, config=config, environ={"QB_EXL2_KEY": "s3cret"}) == [
        401,
        200,
        200,
        401,
        200,
    ]
    with pytest.raises(Exl2ConfigError, match="QB_EXL2_KEY"):
        create_app(FakeEngine(), config, CollectorRegistry(), environ={})


def test_shutdown_fails_live_streams_cleanly() -> None:
    async def fn(client: Client, _: CollectorRegistry, engine: FakeEngine) -> bytes:
        resp = await client.post(
            "/v1/completions", json={"prompt": "x", "max_tokens": 60, "stream": True}
        )
        await resp.content.readline()
        await engine.close()  # what the app's on_shutdown does
        return await resp.read()

    tail = run_app(fn, FakeEngine(itl_s=0.01))
    assert tail.endswith(b"data: [DONE]\n\n") and b'"error"' in tail


def test_max_tokens_over_the_room_left_is_lowered_to_fit_like_vllm() -> None:
    async def fn(client: Client, *_: Any) -> tuple[Any, tuple[int, Any]]:
        body = {"prompt": "w " * 10, "max_tokens": 60, "ignore_eos": True}
        fitted = await (await client.post("/v1/completions", json=body)).json()
        pinned = await client.post("/v1/completions", json=body | {"min_tokens": 60})
        return fitted, (pinned.status, await pinned.json())

    fitted, (status, error) = run_app(fn)
    assert fitted["usage"] == {"prompt_tokens": 11, "total_tokens": 64, "completion_tokens": 53}
    assert status == 400
    assert (
        error["error"]["message"]
        == "min_tokens must be less than or equal to max_tokens=53, got 60."
    )
