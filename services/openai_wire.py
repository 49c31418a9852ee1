"""Pieces of the OpenAI streaming wire format that vLLM and our ExLlamaV2 server write alike:
SSE framing, the head of every chunk, the streamed chunks, the usage object and the error
body (STACKS.md 1.3).

vLLM 0.33 serialises its pydantic chunks with `exclude_unset=True`, so every field its serving
code passes explicitly appears even when null (`token_ids`, `kv_transfer_params`, ...), and
puts `system_fingerprint` on the last message (`entrypoints/openai/completion/serving.py`,
`chat_completion/serving.py`; models in `completion/protocol.py`, `chat_completion/
protocol.py`). `VLLM_033` writes those bytes; `COMPACT` (our ExLlamaV2 server) leaves them out.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

__all__ = [
    "COMPACT",
    "DONE",
    "VLLM_033",
    "ChunkStyle",
    "Json",
    "chat_chunk",
    "completion_chunk",
    "dumps",
    "error_body",
    "response_head",
    "sse",
    "usage",
    "usage_chunk",
]

Json = dict[str, Any]
DONE = b"data: [DONE]\n\n"


@dataclass(frozen=True)
class ChunkStyle:
    """Which declared-but-unset fields a server's chunks carry as nulls."""

    vllm_nulls: bool = False


COMPACT = ChunkStyle()
VLLM_033 = ChunkStyle(vllm_nulls=True)


def dumps(obj: Any) -> bytes:
    """Compact JSON with non-ASCII text as UTF-8, as pydantic's `model_dump_json` writes it."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def sse(obj: Json) -> bytes:
    """One server-sent event, framed as vLLM does: `data: <compact json>\\n\\n`."""
    return b"data: " + dumps(obj) + b"\n\n"


def response_head(id_prefix: str, obj: str, model: str, request_id: str | None = None) -> Json:
    """The leading keys shared by every chunk of one response; vLLM uses the client's
    `X-Request-Id` in the id when one is sent (`serve/engine/serving.py::_base_request_id`)."""
    return {
        "id": f"{id_prefix}-{request_id or uuid.uuid4().hex}",
        "object": obj,
        "created": int(time.time()),
        "model": model,
    }


def _tail(
    chunk: Json, use: Json | None, fingerprint: str | None, style: ChunkStyle, kv: bool = True
) -> Json:
    if use is not None:
        chunk["usage"] = use
    if fingerprint is not None:
        chunk["system_fingerprint"] = fingerprint
    if style.vllm_nulls and kv:
        chunk["kv_transfer_params"] = None
    return chunk


def completion_chunk(
    head: Json,
    text: str,
    finish_reason: str | None,
    *,
    stop_reason: str | None = None,
    use: Json | None = None,
    fingerprint: str | None = None,
    style: ChunkStyle = COMPACT,
) -> Json:
    """A streamed completion chunk; `use`: per-chunk usage (vLLM's continuous_usage_stats);
    `fingerprint`: vLLM stamps it on the last chunk when no usage chunk follows."""
    choice: Json = {
        "index": 0,
        "text": text,
        "logprobs": None,
        "finish_reason": finish_reason,
        "stop_reason": stop_reason,
    }
    if style.vllm_nulls:
        choice |= {"prompt_token_ids": None, "token_ids": None, "weight_versions": None}
    return _tail({**head, "choices": [choice]}, use, fingerprint, style)


def chat_chunk(
    head: Json,
    delta: Json,
    finish_reason: str | None,
    *,
    stop_reason: str | None = None,
    use: Json | None = None,
    fingerprint: str | None = None,
    style: ChunkStyle = COMPACT,
    role: bool = False,
) -> Json:
    """A chat delta; `stop_reason` appears only on the last content chunk, as in vLLM.

    `role`: vLLM's role-only first chunk, which carries `prompt_token_ids`/`prompt_text`
    rather than `token_ids`/`kv_transfer_params`.
    """
    choice: Json = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
    if finish_reason is not None:
        choice["stop_reason"] = stop_reason
    if style.vllm_nulls and not role:
        choice["token_ids"] = None
        if finish_reason is not None:
            choice["weight_versions"] = None
    chunk = _tail({**head, "choices": [choice]}, use, fingerprint, style, kv=not role)
    if style.vllm_nulls and role:
        chunk |= {"prompt_token_ids": None, "prompt_text": None}
    return chunk


def usage_chunk(head: Json, use: Json, fingerprint: str | None = None) -> Json:
    """The final `choices: []` chunk of `stream_options.include_usage`."""
    chunk = {**head, "choices": [], "usage": use}
    if fingerprint is not None:
        chunk["system_fingerprint"] = fingerprint
    return chunk


def usage(prompt_tokens: int, completion_tokens: int) -> Json:
    """vLLM's UsageInfo key order: prompt, total, completion."""
    return {
        "prompt_tokens": prompt_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "completion_tokens": completion_tokens,
    }


def error_body(message: str, err_type: str, code: int, param: str | None = None) -> Json:
    return {"error": {"message": message, "type": err_type, "param": param, "code": code}}
