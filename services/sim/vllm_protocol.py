"""vLLM's OpenAI-compatible wire format: request models and byte-exact response bodies.

Key order, and which keys are absent rather than null, follow vLLM 0.33 (STACKS.md 1.1-1.3).
"""

from __future__ import annotations

import functools
import uuid
import zlib

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.openai_wire import (
    DONE,
    VLLM_033,
    Json,
    chat_chunk,
    completion_chunk,
    dumps,
    error_body,
    response_head,
    sse,
    usage,
    usage_chunk,
)
from services.sim.tokens import chat_prompt_tokens, count_tokens

__all__ = [
    "DONE",
    "ChatCompletionRequest",
    "CompletionRequest",
    "ContentEvents",
    "DetokenizeRequest",
    "TokenizeRequest",
    "chat_chunk",
    "chat_pairs",
    "chat_response",
    "chat_usage",
    "completion_chunk",
    "completion_response",
    "error_body",
    "fingerprint",
    "models_body",
    "response_head",
    "sse",
    "usage",
    "usage_chunk",
]


def fingerprint(version: str, config_text: str) -> str:
    """`vllm-<version>-<hash8>` as `serve/utils/fingerprint.py` builds it in its default mode
    (no parallelism); the hash here is of the simulated config, not of a real `VllmConfig`."""
    return f"vllm-{version}-{zlib.crc32(config_text.encode()):08x}"


def chat_usage(prompt_tokens: int, completion_tokens: int) -> Json:
    """Per-chunk usage on chat streams: `completion_tokens_details` is passed explicitly (as
    None) by `chat_completion/serving.py`, so it appears as null."""
    return {**usage(prompt_tokens, completion_tokens), "completion_tokens_details": None}


class ContentEvents:
    """Bytes of the common streamed event (text, no finish reason; per-chunk usage when the
    client asked for it), fast: one formatting call per token.

    Built once per stream from the same builders as every other chunk, so the bytes are
    identical to `sse(chat_chunk(...))` / `sse(completion_chunk(...))`; only the text and
    the usage counts change.
    """

    _MARK = "\x00"
    _TOTAL, _COMPLETION = 1_000_000_007, 1_000_000_009  # stand-ins no real count reaches

    def __init__(self, head: Json, chat: bool, prompt_tokens: int | None = None) -> None:
        use = None
        if prompt_tokens is not None:  # continuous_usage_stats
            use = (chat_usage if chat else usage)(prompt_tokens, 0)
            use["total_tokens"], use["completion_tokens"] = self._TOTAL, self._COMPLETION
        if chat:
            chunk = chat_chunk(head, {"content": self._MARK}, None, use=use, style=VLLM_033)
        else:
            chunk = completion_chunk(head, self._MARK, None, use=use, style=VLLM_033)
        template = sse(chunk).replace(b"%", b"%%")
        # The head (id, model) comes first: find the stand-ins after it, from the end.
        template = _replace_last(template, dumps(self._MARK), b"%s")
        if use is not None:
            template = _replace_last(template, b"%d" % self._COMPLETION, b"%d")
            template = _replace_last(template, b"%d" % self._TOTAL, b"%d", before=b"%d")
        self._template = template
        self._prompt = prompt_tokens

    def __call__(self, text: str, n: int = 0) -> bytes:
        """The event carrying `text`, the `n`-th generated token."""
        if self._prompt is None:
            return self._template % (_json_text(text),)
        return self._template % (_json_text(text), self._prompt + n, n)


def _replace_last(data: bytes, old: bytes, new: bytes, before: bytes | None = None) -> bytes:
    """`data` with the last `old` (the last one before `before`, if given) replaced."""
    end = len(data) if before is None else data.rindex(before)
    at = data.rindex(old, 0, end)
    return data[:at] + new + data[at + len(old) :]


@functools.lru_cache(maxsize=8192)
def _json_text(text: str) -> bytes:
    """A token's text as a JSON string (tokens repeat: their encodings are kept)."""
    return dumps(text)


class _Lenient(BaseModel):
    # vLLM ignores (and logs) unknown request fields rather than rejecting them.
    model_config = ConfigDict(extra="ignore")


class StreamOptions(_Lenient):
    include_usage: bool | None = False
    continuous_usage_stats: bool | None = False


class _GenerateRequest(_Lenient):
    model: str | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    # No lower bound here: vLLM refuses < 1 after the length rules ("max_tokens must be at least
    # 1"), except `echo` with 0 on completions (the prompt alone, scored).
    max_tokens: int | None = None
    temperature: float | None = None  # 0: greedy (the simulated model's own choices)
    n: int = Field(1, ge=1, le=1, description="the simulator returns one choice")
    # Accepted for compatibility; the simulator never stops early, so it always generates
    # exactly max_tokens tokens and finishes with "length", as with ignore_eos=true.
    min_tokens: int = Field(0, ge=0)
    ignore_eos: bool = False

    @model_validator(mode="after")
    def _stream_options_need_stream(self) -> _GenerateRequest:
        if self.stream_options is not None and not self.stream:
            raise ValueError("Stream options can only be defined when `stream=True`.")
        return self

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    @property
    def continuous_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.continuous_usage_stats)


class CompletionRequest(_GenerateRequest):
    prompt: str | list[int]
    echo: bool | None = False
    logprobs: int | None = None
    prompt_logprobs: int | None = None
    return_tokens_as_token_ids: bool | None = None

    @model_validator(mode="after")
    def _check_logprobs(self) -> CompletionRequest:
        """`CompletionRequest.check_logprobs` of vLLM 0.33 (completion/protocol.py)."""
        if self.prompt_logprobs is not None:
            if self.stream and (self.prompt_logprobs > 0 or self.prompt_logprobs == -1):
                raise ValueError("`prompt_logprobs` are not available when `stream=True`.")
            if self.prompt_logprobs < 0 and self.prompt_logprobs != -1:
                raise ValueError("`prompt_logprobs` must be a positive value or -1.")
        if self.logprobs is not None and self.logprobs < 0 and self.logprobs != -1:
            raise ValueError("`logprobs` must be a positive value or -1.")
        return self

    def prompt_tokens(self) -> int:
        return len(self.prompt) if isinstance(self.prompt, list) else count_tokens(self.prompt)

    @property
    def scores_prompt(self) -> bool:
        """Whether the answer carries prompt log-probs (`prompt_logprobs`, or `echo` with
        `logprobs`: `to_sampling_params` then sets prompt_logprobs = logprobs)."""
        return self.prompt_logprobs is not None or bool(self.echo and self.logprobs is not None)


class _ContentPart(_Lenient):
    type: str
    text: str | None = None


class ChatMessage(_Lenient):
    role: str
    content: str | list[_ContentPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return " ".join(part.text or "" for part in self.content)
        return self.content or ""


def chat_pairs(messages: list[ChatMessage]) -> list[tuple[str, str]]:
    """(role, text) of each message, the input of the stand-in chat template."""
    return [(m.role, m.text()) for m in messages]


class ChatCompletionRequest(_GenerateRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)

    def prompt_tokens(self) -> int:
        return chat_prompt_tokens(chat_pairs(self.messages))


class DetokenizeRequest(_Lenient):
    model: str | None = None
    tokens: list[int]


class TokenizeRequest(_Lenient):
    model: str | None = None
    prompt: str | None = None
    messages: list[ChatMessage] | None = None
    add_special_tokens: bool = True
    return_token_strs: bool | None = False

    @model_validator(mode="after")
    def _prompt_or_messages(self) -> TokenizeRequest:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("exactly one of `prompt` or `messages` is required")
        return self


def _full_usage(usage: Json) -> Json:
    return {**usage, "prompt_tokens_details": None}


def completion_response(
    head: Json,
    text: str,
    finish_reason: str,
    usage: Json,
    logprobs: Json | None = None,
    prompt_logprobs: list[Json | None] | None = None,
) -> Json:
    choice = {
        "index": 0,
        "text": text,
        "logprobs": logprobs,
        "finish_reason": finish_reason,
        "stop_reason": None,
        "prompt_logprobs": prompt_logprobs,
    }
    return {**head, "choices": [choice], "usage": _full_usage(usage)}


def chat_response(head: Json, text: str, finish_reason: str, usage: Json) -> Json:
    message: Json = {"role": "assistant", "content": text, "refusal": None, "tool_calls": []}
    choice = {
        "index": 0,
        "message": message,
        "logprobs": None,
        "finish_reason": finish_reason,
        "stop_reason": None,
    }
    return {**head, "choices": [choice], "usage": _full_usage(usage), "prompt_logprobs": None}


def models_body(model: str, max_model_len: int, created: int) -> Json:
    permission = {
        "id": f"modelperm-{uuid.uuid4().hex}",
        "object": "model_permission",
        "created": created,
        "allow_create_engine": False,
        "allow_sampling": True,
        "allow_logprobs": True,
        "allow_search_indices": False,
        "allow_view": True,
        "allow_fine_tuning": False,
        "organization": "*",
        "group": None,
        "is_blocking": False,
    }
    card = {
        "id": model,
        "object": "model",
        "created": created,
        "owned_by": "vllm",
        "root": model,
        "parent": None,
        "max_model_len": max_model_len,
        "permission": [permission],
    }
    return {"object": "list", "data": [card]}
