"""The simulated TGI wire format, byte for byte, against an in-process app (fixed timing)."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from services.sim import SimSettings, build_engine
from services.sim import tgi_protocol as wire
from services.sim.textmodel import text_model_for
from services.sim.tgi_app import create_tgi_sim_app, tgi_metrics_for
from services.sim.tokens import token_ids

MODEL = "sim/llama-3.1-8b-instruct-awq"
FINGERPRINT = "3.3.6-dev0-native"
Client = TestClient[Any, Any]
# Greedy (no sampling parameters), the simulated model continues "Hello world" with these
# tokens on an AWQ server of seed 0 (services/sim/textmodel.py); logprobs are made up per id.
WORDS = list(itertools.islice(
    text_model_for(SimSettings(stack="tgi")).greedy(token_ids("Hello world"), 2), 3
))  # fmt: skip
TEXT = "".join(WORDS)
TOKENS = [json.dumps(wire.make_token(w), separators=(",", ":")) for w in WORDS]


def run_tgi(
    fn: Callable[[Client], Awaitable[Any]], keep_alive_s: float = 15.0, **settings: Any
) -> Any:
    """Run `fn(client)` against an in-process TGI app with fixed timing (TTFT 2 ms, ITL 1 ms)."""

    async def main() -> Any:
        sim = SimSettings.model_validate(
            {"stack": "tgi", "timing": "fixed", "ttft_ms": 2.0, "itl_ms": 1.0} | settings
        )
        metrics = tgi_metrics_for(sim)
        engine = build_engine(sim, metrics)
        app = create_tgi_sim_app(sim, engine, metrics, keep_alive_s=keep_alive_s)
        async with TestClient(TestServer(app)) as client:
            return await fn(client)

    return asyncio.run(main())


def events(raw: bytes) -> list[bytes]:
    assert raw.endswith(b"\n\n"), raw[-40:]
    return [e + b"\n\n" for e in raw[:-2].split(b"\n\n")]


def test_generate_stream_is_axum_framed_without_done() -> None:
    async def fn(client: Client) -> tuple[int, Any, bytes]:
        body = {"inputs": "Hello world", "parameters": {"max_new_tokens": 3, "details": True}}
        resp = await client.post("/generate_stream", json=body)
        return resp.status, resp.headers, await resp.read()

    status, headers, raw = run_tgi(fn)
    assert status == 200
    assert headers["Content-Type"] == "text/event-stream"
    assert (headers["x-compute-type"], headers["x-compute-characters"]) == ("gpu+optimized", "11")
    assert headers["X-Accel-Buffering"] == "no" and headers["Cache-Control"] == "no-cache"
    assert (
        raw
        == (
            f'data:{{"index":1,"token":{TOKENS[0]},"generated_text":null,"details":null}}\n\n'
            f'data:{{"index":2,"token":{TOKENS[1]},"generated_text":null,"details":null}}\n\n'
            f'data:{{"index":3,"token":{TOKENS[2]},"generated_text":"{TEXT}",'
            '"details":{"finish_reason":"length","generated_tokens":3,"seed":null,'
            '"input_length":2}}\n\n'
        ).encode()
    ), "axum writes `data:` without a space and TGI sends no [DONE] on this route"


def test_generate_returns_details_and_timing_headers() -> None:
    async def fn(client: Client) -> tuple[int, Any, Any]:
        body = {"inputs": "Hello world", "parameters": {"max_new_tokens": 3, "details": True}}
        resp = await client.post("/generate", json=body)
        return resp.status, resp.headers, await resp.read()

    status, headers, raw = run_tgi(fn)
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert (
        raw
        == (
            f'{{"generated_text":"{TEXT}","details":{{"finish_reason":"length",'
            f'"generated_tokens":3,"seed":null,"prefill":[],"tokens":[{",".join(TOKENS)}]}}}}'
        ).encode()
    )
    assert (headers["x-prompt-tokens"], headers["x-generated-tokens"]) == ("2", "3")
    total_ms = int(headers["x-total-time"])
    assert 4 <= total_ms < 5000, "TTFT 2 ms + 2 x ITL 1 ms at least"
    assert abs(float(headers["x-compute-time"]) * 1000 - total_ms) < 1.0, "seconds vs ms"
    parts = [int(headers[f"x-{k}-time"]) for k in ("validation", "queue", "inference")]
    assert sum(parts) <= total_ms and int(headers["x-time-per-token"]) <= parts[2]


def test_compat_route_switches_on_stream_and_returns_an_array() -> None:
    async def fn(client: Client) -> tuple[Any, bytes, Any]:
        body: dict[str, Any] = {"inputs": "Hi", "parameters": {"max_new_tokens": 2}}
        plain = await (await client.post("/", json=body)).json()
        streamed = await (await client.post("/", json=body | {"stream": True})).read()
        body["parameters"]["return_full_text"] = False
        return plain, streamed, await (await client.post("/", json=body)).json()

    plain, streamed, no_prompt = run_tgi(fn)
    assert isinstance(plain, list) and list(plain[0]) == ["generated_text"]
    # A text-generation pipeline tag makes return_full_text default to true on `/` only.
    assert plain[0]["generated_text"].startswith("Hi ")
    final = json.loads(events(streamed)[-1].removeprefix(b"data:"))
    assert final["generated_text"].startswith("Hi ") and final["details"] is None
    assert not no_prompt[0]["generated_text"].startswith("Hi")


def test_validation_errors_are_422_or_stream_events() -> None:
    # validation.rs checks input + this segment's tokens (at most 1024) against the total
    too_long = {"inputs": "Hello world", "parameters": {"max_new_tokens": 1023}}
    message = (
        "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 1024. "
        "Given: 2 `inputs` tokens and 1023 `max_new_tokens`"
    )

    async def fn(client: Client) -> list[tuple[int, str, bytes]]:
        out = []
        for path, body in [
            ("/generate", too_long),
            ("/generate_stream", too_long),
            ("/generate", {"inputs": "", "parameters": {"max_new_tokens": 1}}),
            ("/generate", {"inputs": "x", "parameters": {"temperature": 0.0}}),
            ("/generate_stream", {"inputs": "x", "parameters": {"best_of": 2}}),
            ("/generate", {"parameters": {}}),
            ("/generate", {"inputs": "x", "parameters": {"max_new_tokens": "5"}}),
        ]:
            resp = await client.post(path, json=body)
            out.append((resp.status, resp.content_type, await resp.read()))
        resp = await client.post(
            "/generate", data=b"{oops", headers={"Content-Type": "application/json"}
        )
        out.append((resp.status, resp.content_type, await resp.read()))
        return out

    results = run_tgi(fn, max_model_len=1024)
    assert results[0] == (
        422,
        "application/json",
        json.dumps({"error": message, "error_type": "validation"}, separators=(",", ":")).encode(),
    )
    assert results[1] == (200, "text/event-stream", b"data:" + results[0][2] + b"\n\n")
    assert json.loads(results[2][2])["error"] == "Input validation error: `inputs` cannot be empty"
    assert b"`temperature` must be strictly positive" in results[3][2]
    assert (
        results[4][0] == 200 and b"`best_of` != 1 is not supported when streaming" in results[4][2]
    )
    for status, content_type, raw in results[5:7]:  # axum's Json extractor rejects the body
        assert (status, content_type) == (422, "text/plain")
        assert raw.startswith(b"Failed to deserialize the JSON body into the target type")
    assert results[7][:2] == (400, "text/plain")
    assert results[7][2].startswith(b"Failed to parse the request body as JSON")


def test_omitted_max_new_tokens_fills_the_context() -> None:
    async def fn(client: Client) -> Any:
        resp = await client.post(
            "/generate", json={"inputs": "a b", "parameters": {"details": True}}
        )
        return await resp.json()

    out = run_tgi(fn, max_model_len=32, itl_ms=0.0)
    assert out["details"]["generated_tokens"] == 30, "max_total_tokens - input tokens"
    out = run_tgi(fn, itl_ms=0.0, ttft_ms=0.0)
    assert out["details"]["generated_tokens"] == 4094, "compose's context 4096 - 2 input tokens"
    out = run_tgi(fn, itl_ms=0.0, ttft_ms=0.0, max_input_tokens=3072)
    # Segments of 1024, each re-validated with its text appended to the input (infer/mod.rs):
    # after 3 x 1024 the input (2 + 3072) is over --max-input-tokens 3072, so it ends there.
    assert out["details"]["generated_tokens"] == 3072


def test_top_tokens_appear_only_when_requested() -> None:
    async def fn(client: Client) -> tuple[bytes, bytes]:
        base = {"inputs": "Hi", "parameters": {"max_new_tokens": 2}}
        plain = await (await client.post("/generate_stream", json=base)).read()
        base["parameters"] = {"max_new_tokens": 2, "top_n_tokens": 3}
        return plain, await (await client.post("/generate_stream", json=base)).read()

    plain, with_top = run_tgi(fn)
    assert b"top_tokens" not in plain, "serde skips an empty top_tokens"
    for event in events(with_top):
        obj = json.loads(event.removeprefix(b"data:"))
        assert list(obj) == ["index", "token", "top_tokens", "generated_text", "details"]
        assert len(obj["top_tokens"]) == 3 and obj["top_tokens"][0] == obj["token"]


def _chat_chunk(created: int, content: str, finish: str) -> str:
    return (
        f'data:{{"object":"chat.completion.chunk","id":"","created":{created},"model":"{MODEL}",'
        f'"system_fingerprint":"{FINGERPRINT}","choices":[{{"index":0,"delta":{{"role":"assistant",'
        f'"content":"{content}"}},"logprobs":null,"finish_reason":{finish}}}],"usage":null}}\n\n'
    )


def test_chat_stream_bytes() -> None:
    async def fn(client: Client) -> bytes:
        body = {
            "model": "any-name-is-served",
            "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 2,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        resp = await client.post("/v1/chat/completions", json=body)
        assert resp.status == 200
        return await resp.read()

    got = events(run_tgi(fn))
    created = [json.loads(e.removeprefix(b"data:"))["created"] for e in got[:3]]
    assert abs(created[0] - time.time()) < 60
    assert [e.decode() for e in got] == [
        _chat_chunk(created[0], " stream", "null"),
        _chat_chunk(created[1], " have", '"length"'),
        f'data:{{"object":"chat.completion.chunk","id":"","created":{created[2]},"model":"{MODEL}",'
        f'"system_fingerprint":"{FINGERPRINT}","choices":[],"usage":{{"prompt_tokens":8,'
        '"completion_tokens":2,"total_tokens":10}}\n\n',
        "data:[DONE]\n\n",
    ], "no role-only first chunk, usage null on content chunks, [DONE] without a space"


def test_chat_errors_and_non_streaming_body() -> None:
    async def fn(client: Client) -> tuple[int, bytes, Any, Any]:
        messages = [{"role": "user", "content": "Hi"}]
        bad = {"model": "tgi", "messages": messages, "max_tokens": 1020, "stream": True}
        resp = await client.post("/v1/chat/completions", json=bad)
        ok = await client.post("/v1/chat/completions", json={"messages": messages, "max_tokens": 3})
        return resp.status, await resp.read(), await ok.json(), ok.headers

    status, raw, body, headers = run_tgi(fn, max_model_len=1024)
    assert status == 200
    assert events(raw) == [
        b'data:{"error":{"message":"Input validation error: `inputs` tokens + `max_new_tokens` '
        b'must be <= 1024. Given: 8 `inputs` tokens and 1020 `max_new_tokens`",'
        b'"http_status_code":422}}\n\n',
        b"data:[DONE]\n\n",
    ]
    assert list(body) == [
        "object",
        "id",
        "created",
        "model",
        "system_fingerprint",
        "choices",
        "usage",
    ]
    assert body["object"] == "chat.completion" and body["id"] == ""
    assert body["choices"][0] == {
        "index": 0,
        "message": {"role": "assistant", "content": " stream have cache"},
        "logprobs": None,
        "finish_reason": "length",
    }
    assert body["usage"] == {"prompt_tokens": 8, "completion_tokens": 3, "total_tokens": 11}
    assert headers["x-generated-tokens"] == "3"


def test_completions_stream_and_body() -> None:
    async def fn(client: Client) -> tuple[bytes, Any, Any, tuple[int, Any]]:
        body: dict[str, Any] = {"model": "tgi", "prompt": "Hi there", "max_tokens": 2}
        raw = await (await client.post("/v1/completions", json=body | {"stream": True})).read()
        resp = await client.post("/v1/completions", json=body)
        bad = await client.post("/v1/completions", json=body | {"suffix": "!"})
        return raw, await resp.json(), resp.headers, (bad.status, await bad.json())

    raw, body, headers, bad = run_tgi(fn)
    got = [json.loads(e.removeprefix(b"data:")) for e in events(raw)[:-1]]
    assert events(raw)[-1] == b"data:[DONE]\n\n"
    assert list(got[0]) == ["object", "id", "created", "choices", "model", "system_fingerprint"]
    assert got[0]["choices"] == [
        {"index": 0, "text": " stream", "logprobs": None, "finish_reason": ""}
    ]
    assert list(got[1]) == [
        "object",
        "id",
        "created",
        "model",
        "system_fingerprint",
        "choices",
        "usage",
    ]
    assert (got[1]["id"], got[1]["choices"][0]["finish_reason"]) == ("", "length")
    assert got[1]["usage"] == {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4}
    assert body["object"] == "text_completion" and body["usage"]["completion_tokens"] == 2
    assert "x-compute-time" not in headers and headers["x-prompt-tokens"] == "2"
    assert bad == (
        422,
        {
            "error": "Suffix is not supported and can be achieved by preprocessing the prompt.",
            "error_type": "suffix not supported",
        },
    )


def test_info_routes() -> None:
    async def fn(client: Client) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for path in ("/info", "/v1/models"):
            out[path] = await (await client.get(path)).json()
        for path in ("/health", "/ping", "/"):
            resp = await client.get(path)
            out[path] = (resp.status, await resp.read())
        tok = await client.post("/tokenize", json={"inputs": "Hello, world"})
        out["/tokenize"] = await tok.json()
        return out

    out = run_tgi(fn, max_concurrent_requests=7)
    assert list(out["/info"].items()) == list(
        {
            "model_id": MODEL,
            "model_sha": None,
            "model_pipeline_tag": "text-generation",
            "max_concurrent_requests": 7,
            "max_best_of": 2,
            "max_stop_sequences": 4,
            "max_input_tokens": 4095,  # compose's --max-input-tokens
            "max_total_tokens": 4096,
            "validation_workers": 2,
            "max_client_batch_size": 4,
            "router": "text-generation-router",
            "version": "3.3.6-dev0",
            "sha": None,
            "docker_label": None,
        }.items()
    ), "all fields of Info, in lib.rs order"
    assert out["/v1/models"] == {
        "object": "list",
        "data": [{"id": MODEL, "object": "model", "created": 0, "owned_by": MODEL}],
    }
    assert out["/health"] == out["/ping"] == out["/"] == (200, b"")
    assert [(t["text"], t["start"], t["stop"]) for t in out["/tokenize"]] == [
        ("Hello", 0, 5),
        (",", 5, 6),
        ("world", 7, 12),
    ]


def test_keep_alive_comments_fill_silences() -> None:
    async def fn(client: Client) -> bytes:
        body = {"inputs": "Hi", "parameters": {"max_new_tokens": 2}}
        return await (await client.post("/generate_stream", json=body)).read()

    got = events(run_tgi(fn, keep_alive_s=0.02, ttft_ms=70.0, itl_ms=70.0))
    assert b":\n\n" in got, "axum's KeepAlive sends an empty comment after a silence"
    assert next(e for e in got if e != b":\n\n").startswith(b'data:{"index":1,')
    assert got[-1].startswith(b'data:{"index":2,')


def test_overload_answers_200_event_on_streams_and_429_on_generate() -> None:
    overloaded = b'{"error":"Model is overloaded","error_type":"overloaded"}'

    async def fn(client: Client) -> tuple[bytes, int, bytes, int, str]:
        long = {"inputs": "Hi", "parameters": {"max_new_tokens": 500}}
        held = [await client.post("/generate_stream", json=long) for _ in range(2)]
        for resp in held:
            await resp.content.readline()  # admitted and generating
        third = await client.post("/generate_stream", json=long)
        assert third.status == 200
        third_raw = await third.read()
        refused = await client.post("/generate", json=long)
        refused_raw = await refused.read()
        for resp in held:
            resp.close()  # the server sees the disconnect at its next write
        deadline = time.monotonic() + 5.0
        while True:
            ok = await client.post(
                "/generate", json={"inputs": "Hi", "parameters": {"max_new_tokens": 1}}
            )
            if ok.status == 200 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.01)
        metrics = await (await client.get("/metrics")).text()
        return third_raw, refused.status, refused_raw, ok.status, metrics

    third_raw, refused_status, refused_raw, after, metrics = run_tgi(
        fn, max_concurrent_requests=2, itl_ms=5.0
    )
    assert third_raw == b"data:" + overloaded + b"\n\n"
    assert (refused_status, refused_raw) == (429, overloaded)
    assert after == 200, "permits are released when the held streams go away"
    failures = {
        s.labels["err"]: s.value
        for family in text_string_to_metric_families(metrics)
        for s in family.samples
        if s.name == "tgi_request_failure_total"
    }
    assert failures == {"overloaded": 2.0, "dropped": 2.0}
