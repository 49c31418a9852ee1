"""Pieces of the OpenAI streaming wire format that vLLM and our ExLlamaV2 server write alike:
SSE framing, the head of every chunk, the streamed chunks, the usage object and the error
body (STACKS.md 1.3).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

__all__ = [
    "DONE",
    "Json",
    "chat_chunk",
    "completion_chunk",
    "error_body",
    "response_head",
    "sse",
    "usage",
    "usage_chunk",
]

Json = dict[str, Any]
DONE = b"data: [DONE]\n\n"


def sse(obj: Json) -> bytes:
    """One server-sent event, framed as vLLM does: `data: <compact json>\\n\\n`."""
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def response_head(id_prefix: str, obj: str, model: str) -> Json:
    """The leading keys shared by every chunk of one response."""
    return {
        "id": f"{id_prefix}-{uuid.uuid4().hex}",
        "object": obj,
        "created": int(time.time()),
        "model": model,
    }


def completion_chunk(
    head: Json,
    text: str,
    finish_reason: str | None,
    *,
    stop_reason: str | None = None,
    use: Json | None = None,
) -> Json:
    """A streamed completion chunk; `use`: per-chunk usage (vLLM's continuous_usage_stats)."""
    choice = {
        "index": 0,
        "text": text,
        "logprobs": None,
        "finish_reason": finish_reason,
        "stop_reason": stop_reason,
    }
    chunk = {**head, "choices": [choice]}
    if use is not None:
        chunk["usage"] = use
    return chunk


def chat_chunk(
    head: Json,
    delta: Json,
    finish_reason: str | None,
    *,
    stop_reason: str | None = None,
    use: Json | None = None,
) -> Json:
    """A chat delta; `stop_reason` appears only on the last content chunk, as in vLLM."""
    choice: Json = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
    if finish_reason is not None:
        choice["stop_reason"] = stop_reason
    chunk = {**head, "choices": [choice]}
    if use is not None:
        chunk["usage"] = use
    return chunk


def usage_chunk(head: Json, use: Json) -> Json:
    """The final `choices: []` chunk of `stream_options.include_usage`."""
    return {**head, "choices": [], "usage": use}


def usage(prompt_tokens: int, completion_tokens: int) -> Json:
    """vLLM's UsageInfo key order: prompt, total, completion."""
    return {
        "prompt_tokens": prompt_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "completion_tokens": completion_tokens,
    }


def error_body(message: str, err_type: str, code: int, param: str | None = None) -> Json:
    return {"error": {"message": message, "type": err_type, "param": param, "code": code}}
