"""The vLLM wire format, byte for byte, against an in-process app."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any

from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry

from services.openai_wire import DONE, VLLM_033, chat_chunk, completion_chunk, sse, usage_chunk
from services.sim.tokens import words
from services.sim.vllm_protocol import chat_usage, usage

MODEL = "sim/llama-3.1-8b-instruct-awq"
# vllm-<version>-<hash8> (serve/utils/fingerprint.py); the simulator hashes its own settings.
FINGERPRINT = "vllm-0.33.0-bd6321a6"
Client = TestClient[Any, Any]


def _events(body: bytes) -> list[bytes]:
    assert body.endswith(b"\n\n"), body[-40:]
    return [e + b"\n\n" for e in body[:-2].split(b"\n\n")]


def _head(event: bytes) -> tuple[str, int]:
    obj = json.loads(event.removeprefix(b"data: "))
    return obj["id"], obj["created"]


def test_completions_stream_bytes(with_client: Any) -> None:
    async def fn(client: Client, _: CollectorRegistry) -> tuple[str, bytes]:
        body = {"model": MODEL, "prompt": "Say hi", "max_tokens": 3, "stream": True}
        body["stream_options"] = {"include_usage": True}
        resp = await client.post("/v1/completions", json=body)
        assert resp.status == 200
        return resp.headers["Content-Type"], await resp.read()

    content_type, body = with_client(fn)
    assert content_type.startswith("text/event-stream")
    events = _events(body)
    cid, created = _head(events[0])
    assert cid.startswith("cmpl-") and len(cid) == 5 + 32
    head = f'{{"id":"{cid}","object":"text_completion","created":{created},"model":"{MODEL}"'
    w = list(itertools.islice(words(0), 3))
    # vLLM 0.33 completion/serving.py builds each chunk passing prompt_token_ids, token_ids,
    # weight_versions and kv_transfer_params explicitly, and dumps it with exclude_unset=True,
    # so they appear as nulls; the usage chunk (exclude_none=True) carries system_fingerprint.
    nulls = '"prompt_token_ids":null,"token_ids":null,"weight_versions":null'
    expected = [
        *(
            f'data: {head},"choices":[{{"index":0,"text":"{w[k]}","logprobs":null,'
            f'"finish_reason":{fin},"stop_reason":null,{nulls}}}],"kv_transfer_params":null}}\n\n'
            for k, fin in enumerate(["null", "null", '"length"'])
        ),
        f'data: {head},"choices":[],"usage":{{"prompt_tokens":2,"total_tokens":5,'
        f'"completion_tokens":3}},"system_fingerprint":"{FINGERPRINT}"}}\n\n',
        "data: [DONE]\n\n",
    ]
    assert [e.decode() for e in events] == expected


def test_chat_stream_bytes(with_client: Any) -> None:
    async def fn(client: Client, _: CollectorRegistry) -> bytes:
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": "Hi"}],
            "max_completion_tokens": 2,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        resp = await client.post("/v1/chat/completions", json=body)
        assert resp.status == 200
        return await resp.read()

    events = _events(with_client(fn))
    cid, created = _head(events[0])
    assert cid.startswith("chatcmpl-") and len(cid) == 9 + 32
    head = f'{{"id":"{cid}","object":"chat.completion.chunk","created":{created},"model":"{MODEL}"'
    w = list(itertools.islice(words(0), 2))
    choice = '"choices":[{"index":0,"delta":'
    # chat_completion/serving.py: the role chunk passes prompt_token_ids and prompt_text, the
    # content chunks token_ids (and the last one stop_reason and weight_versions), each chunk
    # kv_transfer_params; all are dumped with exclude_unset=True, so as nulls.
    expected = [
        f'data: {head},{choice}{{"role":"assistant","content":""}},"logprobs":null,'
        '"finish_reason":null}],"prompt_token_ids":null,"prompt_text":null}\n\n',
        f'data: {head},{choice}{{"content":"{w[0]}"}},"logprobs":null,'
        '"finish_reason":null,"token_ids":null}],"kv_transfer_params":null}\n\n',
        f'data: {head},{choice}{{"content":"{w[1]}"}},"logprobs":null,"finish_reason":"length",'
        '"stop_reason":null,"token_ids":null,"weight_versions":null}],'
        '"kv_transfer_params":null}\n\n',
        # prompt: 2 template tokens x 1 message + 1 word + 3 for the assistant header = 8
        f'data: {head},"choices":[],"usage":{{"prompt_tokens":8,"total_tokens":10,'
        f'"completion_tokens":2}},"system_fingerprint":"{FINGERPRINT}"}}\n\n',
        "data: [DONE]\n\n",
    ]
    assert [e.decode() for e in events] == expected
    assert all(b'"usage"' not in e for e in events[:-2]), "usage is absent, not null, elsewhere"


def test_per_chunk_usage_stream_bytes(with_client: Any) -> None:
    """What quantbench asks of a vLLM target (continuous_usage_stats), built by the fast
    per-token path: the same bytes as the chunk builders, event for event."""

    async def fn(client: Client, _: CollectorRegistry) -> tuple[bytes, bytes]:
        options = {"include_usage": True, "continuous_usage_stats": True}
        body = {"prompt": "Say hi", "max_tokens": 3, "stream": True, "stream_options": options}
        completion = await (await client.post("/v1/completions", json=body)).read()
        chat = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2,
                "stream": True, "stream_options": options}  # fmt: skip
        return completion, await (await client.post("/v1/chat/completions", json=chat)).read()

    completion, chat = with_client(fn)
    events = _events(completion)
    cid, created = _head(events[0])
    head = {"id": cid, "object": "text_completion", "created": created, "model": MODEL}
    w = list(itertools.islice(words(0), 3))
    expected = [
        sse(completion_chunk(head, w[k], fin, use=usage(2, k + 1), style=VLLM_033))
        for k, fin in enumerate([None, None, "length"])
    ]
    expected += [sse(usage_chunk(head, usage(2, 3), FINGERPRINT)), DONE]
    assert events == expected

    events = _events(chat)
    cid, created = _head(events[0])
    head = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": MODEL}
    w = list(itertools.islice(words(1), 2))
    role = {"role": "assistant", "content": ""}
    expected = [sse(chat_chunk(head, role, None, use=chat_usage(8, 0), style=VLLM_033, role=True))]
    expected += [
        sse(chat_chunk(head, {"content": w[k]}, fin, use=chat_usage(8, k + 1), style=VLLM_033))
        for k, fin in enumerate([None, "length"])
    ]
    expected += [sse(usage_chunk(head, usage(8, 2), FINGERPRINT)), DONE]
    assert events == expected


def test_non_stream_responses_and_defaults(with_client: Any) -> None:
    async def fn(client: Client, _: CollectorRegistry) -> tuple[Any, Any]:
        resp = await client.post("/v1/completions", json={"prompt": "one two three"})
        assert resp.status == 200 and resp.content_type == "application/json"
        completion = await resp.json()
        chat_body = {"model": MODEL, "messages": [{"role": "user", "content": "x"}]}
        resp = await client.post("/v1/chat/completions", json=chat_body | {"max_tokens": 4})
        return completion, await resp.json()

    completion, chat = with_client(fn)
    assert completion["object"] == "text_completion"
    assert completion["usage"]["completion_tokens"] == 16, "completions default max_tokens=16"
    assert completion["choices"][0]["finish_reason"] == "length"
    assert len(completion["choices"][0]["text"].split()) == 16
    assert chat["object"] == "chat.completion"
    assert chat["choices"][0]["message"]["role"] == "assistant"
    assert chat["usage"] | {"prompt_tokens_details": None} == {
        "prompt_tokens": 8,
        "total_tokens": 12,
        "completion_tokens": 4,
        "prompt_tokens_details": None,
    }


def test_chat_default_max_tokens_is_the_rest_of_the_context(with_client: Any) -> None:
    async def fn(client: Client, _: CollectorRegistry) -> Any:
        body = {"messages": [{"role": "user", "content": "a b c"}]}
        return await (await client.post("/v1/chat/completions", json=body)).json()

    out = with_client(fn, max_model_len=32, itl_ms=0.0)
    assert out["usage"]["total_tokens"] == 32


def test_errors(with_client: Any) -> None:
    async def fn(client: Client, _: CollectorRegistry) -> list[tuple[int, Any]]:
        bodies: list[tuple[str, Any]] = [
            ("/v1/completions", {"prompt": "x", "stream_options": {"include_usage": True}}),
            ("/v1/completions", {"prompt": "x", "model": "nope"}),
            ("/v1/completions", {"prompt": "word " * 40, "max_tokens": 1}),
            ("/v1/completions", {"prompt": "x", "max_tokens": 40}),
            ("/v1/completions", {"max_tokens": 2}),
            ("/v1/chat/completions", {"messages": []}),
        ]
        out = []
        for path, body in bodies:
            resp = await client.post(path, json=body)
            out.append((resp.status, await resp.json()))
        resp = await client.post("/v1/completions", data=b"{not json")
        out.append((resp.status, await resp.json()))
        return out

    results = with_client(fn, max_model_len=32)
    assert [status for status, _ in results] == [400, 404, 400, 400, 400, 400, 400]
    for status, body in results:
        assert list(body) == ["error"] and list(body["error"]) == [
            "message",
            "type",
            "param",
            "code",
        ]
        assert body["error"]["code"] == status
    types = [body["error"]["type"] for _, body in results]
    # pydantic validation: "Bad Request"; vLLM's own checks (VLLMValidationError): BadRequestError
    assert types == ["Bad Request", "NotFoundError", "BadRequestError", "BadRequestError",
                     "Bad Request", "Bad Request", "Bad Request"]  # fmt: skip
    assert "stream=True" in results[0][1]["error"]["message"]
    assert results[1][1]["error"]["message"] == "The model `nope` does not exist."
    assert results[2][1]["error"]["param"] == "input_tokens"
    assert results[2][1]["error"]["message"].startswith(
        "This model's maximum context length is 32 tokens. However, your prompt contains 40 "
        "input tokens"
    )
    assert results[3][1]["error"]["message"] == (
        "max_tokens=40 cannot be greater than max_model_len=32. Please request fewer output tokens."
    )


def test_info_routes(with_client: Any) -> None:
    async def fn(client: Client, _: CollectorRegistry) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for path in ("/v1/models", "/version"):
            out[path] = await (await client.get(path)).json()
        health = await client.get("/health")
        out["/health"] = (health.status, await health.read())
        tok = await client.post("/tokenize", json={"prompt": "Hello, world!"})
        out["/tokenize"] = await tok.json()
        chat = {"messages": [{"role": "user", "content": "Hi"}], "return_token_strs": True}
        out["chat"] = await (await client.post("/tokenize", json=chat)).json()
        return out

    out = with_client(fn)
    [card] = out["/v1/models"]["data"]
    assert out["/v1/models"]["object"] == "list"
    assert (card["id"], card["object"], card["owned_by"]) == (MODEL, "model", "vllm")
    assert card["max_model_len"] == 4096 and card["created"] <= time.time()
    assert out["/version"] == {"version": "0.33.0"}
    assert out["/health"] == (200, b"")
    tok = out["/tokenize"]
    assert list(tok) == ["count", "max_model_len", "tokens", "token_strs"]
    assert tok["count"] == len(tok["tokens"]) == 4 and tok["max_model_len"] == 4096
    assert out["chat"]["count"] == 8 and len(out["chat"]["token_strs"]) == 8


def test_client_disconnect_is_not_counted(with_client: Any) -> None:
    """vLLM 0.33 `output_processor.py::abort_requests` records no finish statistics for a
    request the client abandoned: no request_success, no phase histograms."""

    async def fn(client: Client, registry: CollectorRegistry) -> dict[str, float | None]:
        body = {"prompt": "x", "max_tokens": 1000, "stream": True}
        resp = await client.post("/v1/completions", json=body)
        await resp.content.readline()  # first event arrived
        resp.close()  # drop the connection mid-stream
        deadline = time.monotonic() + 5.0
        running = {"model_name": MODEL, "engine": "0"}
        while registry.get_sample_value("vllm:num_requests_running", running) != 0:
            assert time.monotonic() < deadline, "the request was never released"
            await asyncio.sleep(0.005)
        done = await client.post("/v1/completions", json={"prompt": "x", "max_tokens": 2})
        assert done.status == 200
        get = registry.get_sample_value
        return {
            reason: get("vllm:request_success_total", running | {"finished_reason": reason})
            for reason in ("abort", "length")
        } | {"e2e": get("vllm:e2e_request_latency_seconds_count", running)}

    assert with_client(fn) == {"abort": 0.0, "length": 1.0, "e2e": 1.0}
