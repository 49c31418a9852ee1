"""Pieces of the OpenAI streaming wire format that vLLM and our ExLlamaV2 server write alike:
SSE framing, the head of every chunk, the usage object and the error body (STACKS.md 1.3).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

__all__ = ["DONE", "Json", "error_body", "response_head", "sse", "usage"]

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


def usage(prompt_tokens: int, completion_tokens: int) -> Json:
    """vLLM's UsageInfo key order: prompt, total, completion."""
    return {
        "prompt_tokens": prompt_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "completion_tokens": completion_tokens,
    }


def error_body(message: str, err_type: str, code: int, param: str | None = None) -> Json:
    return {"error": {"message": message, "type": err_type, "param": param, "code": code}}
