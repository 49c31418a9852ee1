"""The OpenAI-compatible wire format of the ExLlamaV2 server: request models and bodies.

Framing and chunk shapes follow vLLM (STACKS.md 1.3: `data: <json>\\n\\n`, `data: [DONE]\\n\\n`,
`choices: []` usage chunk, keys absent rather than null), not TabbyAPI's `\\r\\n` framing.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.openai_wire import (
    DONE,
    Json,
    chat_chunk,
    completion_chunk,
    error_body,
    response_head,
    sse,
    usage,
    usage_chunk,
)

__all__ = [
    "DONE",
    "ChatCompletionRequest",
    "CompletionRequest",
    "GenerateRequest",
    "TokenEncodeRequest",
    "chat_chunk",
    "chat_response",
    "completion_chunk",
    "completion_response",
    "error_body",
    "models_body",
    "response_head",
    "sse",
    "usage",
    "usage_chunk",
]


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")  # like vLLM: unknown fields are ignored


class StreamOptions(_Lenient):
    include_usage: bool | None = False


class ChatMessage(_Lenient):
    role: str
    content: str | list[Json] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return " ".join(str(part.get("text") or "") for part in self.content)
        return self.content or ""


class GenerateRequest(_Lenient):
    """Fields shared by both routes; `min_tokens`/`ignore_eos` are vLLM/TabbyAPI extensions."""

    model: str | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    # 0 only with `echo` on completions (the prompt alone, scored); the length rules refuse it
    # otherwise, as vLLM does ("max_tokens must be at least 1").
    max_tokens: int | None = Field(default=None, ge=0)
    min_tokens: int = Field(default=0, ge=0)
    ignore_eos: bool = False
    n: int = Field(default=1, ge=1, le=1, description="one choice per request")
    temperature: float | None = Field(default=None, ge=0)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    seed: int | None = None
    stop: str | list[str] | None = None

    @model_validator(mode="after")
    def _stream_options_need_stream(self) -> GenerateRequest:
        if self.stream_options is not None and not self.stream:
            raise ValueError("Stream options can only be defined when `stream=True`.")
        return self

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def stop_strings(self) -> tuple[str, ...]:
        stops = [self.stop] if isinstance(self.stop, str) else (self.stop or [])
        return tuple(s for s in stops if s)

    def requested_max_tokens(self) -> int | None:
        return self.max_tokens


class CompletionRequest(GenerateRequest):
    """vLLM's prompt-scoring fields too: `echo` with `max_tokens` 0 returns the prompt with
    `logprobs` (OpenAI's object) and/or `prompt_logprobs` (vLLM's list)."""

    prompt: str | list[int]
    echo: bool = False
    logprobs: int | None = Field(default=None, ge=0)
    prompt_logprobs: int | None = Field(default=None, ge=0)
    return_tokens_as_token_ids: bool = False

    @property
    def scores_prompt(self) -> bool:
        return self.echo or self.logprobs is not None or self.prompt_logprobs is not None


class ChatCompletionRequest(GenerateRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)

    def pairs(self) -> list[tuple[str, str]]:
        return [(m.role, m.text()) for m in self.messages]

    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class TokenEncodeRequest(_Lenient):
    """TabbyAPI's `/v1/token/encode`: a text, or chat messages under the template."""

    text: str | list[ChatMessage]


def completion_response(
    head: Json,
    text: str,
    finish_reason: str,
    stop_reason: str | None,
    use: Json,
    logprobs: Json | None = None,
    prompt_logprobs: list[Json | None] | None = None,
) -> Json:
    choice: Json = {
        "index": 0,
        "text": text,
        "logprobs": logprobs,
        "finish_reason": finish_reason,
        "stop_reason": stop_reason,
    }
    if prompt_logprobs is not None:
        choice["prompt_logprobs"] = prompt_logprobs
    return {**head, "choices": [choice], "usage": use}


def chat_response(
    head: Json, text: str, finish_reason: str, stop_reason: str | None, use: Json
) -> Json:
    choice = {
        "index": 0,
        "message": {"role": "assistant", "content": text},
        "logprobs": None,
        "finish_reason": finish_reason,
        "stop_reason": stop_reason,
    }
    return {**head, "choices": [choice], "usage": use}


def models_body(model: str, max_model_len: int, created: int) -> Json:
    card = {
        "id": model,
        "object": "model",
        "created": created,
        "owned_by": "quantbench-exllamav2",
        "root": model,
        "parent": None,
        "max_model_len": max_model_len,
    }
    return {"object": "list", "data": [card]}
