"""Pieces of the OpenAI streaming wire format that vLLM and our ExLlamaV2 server write alike:
SSE framing, the head of every chunk, the streamed chunks, the usage object and the error
body (STACKS.md 1.3).

vLLM 0.33 serialises its pydantic chunks with `exclude_unset=True`, so every field its serving
code passes explicitly appears even when null (`token_ids`, `kv_transfer_params`, ...), and
puts `system_fingerprint` on the last message (`entrypoints/openai/completion/serving.py`,
`chat_completion/serving.py`; models in `completion/protocol.py`, `chat_completion/
protocol.py`). `VLLM_033` writes those bytes; `COMPACT` (our ExLlamaV2 server) leaves them out.

Prompt log-probs take vLLM 0.33's two shapes: the OpenAI completions `logprobs` object
(`completion/serving.py::_create_completion_logprobs`: `tokens`, `token_logprobs` with null for
the first prompt token, `top_logprobs` with the first `logprobs + 1` candidates, `text_offset`
as the running length of the token strings) and vLLM's `prompt_logprobs` list (one
`{token_id: {logprob, rank, decoded_token}}` per position, null first, the prompt token before
the top candidates: `v1/engine/logprobs.py::append_logprobs_for_next_position`).
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
    "TokenLogprob",
    "TopLogprob",
    "chat_chunk",
    "completion_chunk",
    "completion_logprobs",
    "dumps",
    "error_body",
    "prompt_logprobs",
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
_LOGPROB_FLOOR = -9999.0  # vLLM writes -inf as this (`max(logprob, -9999.0)`)


@dataclass(frozen=True, slots=True)
class TopLogprob:
    """One candidate at a position: token id, its text and log-prob."""

    token_id: int
    text: str
    logprob: float


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """One token of a sequence scored given the tokens before it: its log-prob (None for the
    first prompt token, which has no context), its rank, and the best candidates there."""

    token_id: int
    text: str
    logprob: float | None
    rank: int | None = None
    top: tuple[TopLogprob, ...] = ()


def _token_name(token_id: int, text: str, as_ids: bool) -> str:
    return f"token_id:{token_id}" if as_ids else text  # vLLM's `return_tokens_as_token_ids`


def completion_logprobs(tokens: list[TokenLogprob], logprobs: int, *, as_ids: bool = False) -> Json:
    """The OpenAI completions `logprobs` object of `tokens` (prompt and/or generated)."""
    names: list[str] = []
    values: list[float | None] = []
    tops: list[dict[str, float] | None] = []
    offsets: list[int] = []
    offset = 0
    for token in tokens:
        name = _token_name(token.token_id, token.text, as_ids)
        offsets.append(offset)
        offset += len(name)
        names.append(name)
        if token.logprob is None:
            values.append(None)
            tops.append(None)
            continue
        values.append(max(token.logprob, _LOGPROB_FLOOR))
        candidates = {name: max(token.logprob, _LOGPROB_FLOOR)}
        for top in token.top[:logprobs]:
            candidates.setdefault(
                _token_name(top.token_id, top.text, as_ids), max(top.logprob, _LOGPROB_FLOOR)
            )
        tops.append(dict(list(candidates.items())[: logprobs + 1]))
    return {"text_offset": offsets, "token_logprobs": values, "tokens": names, "top_logprobs": tops}


def prompt_logprobs(tokens: list[TokenLogprob], top_n: int) -> list[Json | None]:
    """vLLM's `prompt_logprobs`: per position the prompt token, then `top_n` candidates."""
    out: list[Json | None] = []
    for token in tokens:
        if token.logprob is None:
            out.append(None)
            continue
        entry = {str(token.token_id): _logprob(token.logprob, token.rank, token.text)}
        for rank, top in enumerate(token.top[:top_n], start=1):
            entry.setdefault(str(top.token_id), _logprob(top.logprob, rank, top.text))
        out.append(entry)
    return out


def _logprob(value: float, rank: int | None, text: str) -> Json:
    return {"logprob": max(value, _LOGPROB_FLOOR), "rank": rank, "decoded_token": text}


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
