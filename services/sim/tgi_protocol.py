"""TGI 3.3's wire format: request models, the router's validation rules and byte-exact bodies.

Key order, and which keys are skipped rather than null, follow the serde structs of the Rust
router (`router/src/lib.rs`, `chat.rs`); SSE framing follows axum's `sse.rs` (STACKS.md 2).
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from services.openai_wire import TokenLogprob
from services.sim.tokens import token_ids

__all__ = [
    "DONE", "KEEP_ALIVE", "ChatRequest", "CompatGenerateRequest", "CompletionRequest",
    "GenerateParameters", "GenerateRequest", "Limits", "RequestTimings", "TgiError", "Valid",
    "chat_chunk", "chat_completion", "chat_error", "chat_usage_chunk", "completion_chunk",
    "completion_final", "completions_problem", "dumps", "error_body", "generate_body",
    "info_body", "make_token", "models_body", "prefill_tokens", "rust_float", "sse",
    "stream_event", "timing_headers", "token", "tokenize_body", "usage", "validate",
]  # fmt: skip

_Json = dict[str, Any]
# axum `Event::json_data` writes `data:` + compact JSON + `\n`, `finalize` adds `\n`; `[DONE]` is
# `Event::data("[DONE]")` (no space either). `KeepAlive::new()` sends an empty comment (`:\n\n`).
DONE = b"data:[DONE]\n\n"
KEEP_ALIVE = b":\n\n"
_TOKEN_RE = re.compile(r"\w+|[^\w\s]")  # the stand-in tokenizer's pattern (tokens.py)
_U32 = 2**32 - 1


def dumps(obj: Any) -> bytes:
    """Compact JSON as serde_json writes it (UTF-8, no spaces, NaN as null)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def sse(obj: Any) -> bytes:
    """One SSE event in axum's framing: `data:<json>\\n\\n`, no space after the colon."""
    return b"data:" + dumps(obj) + b"\n\n"


def rust_float(value: float) -> str:
    """An f64 as Rust's `Display` writes it: shortest round-trip digits, never an exponent."""
    text = format(Decimal(repr(float(value))), "f")
    return text.removesuffix(".0") if text.endswith(".0") else text


class TgiError(Exception):
    """A failure TGI reports as `{"error", "error_type"}`; `failure` labels tgi_request_failure."""

    def __init__(self, message: str, error_type: str, status: int, failure: str | None) -> None:
        super().__init__(message)
        self.message, self.error_type = message, error_type
        self.status, self.failure = status, failure

    @classmethod
    def validation(cls, detail: str) -> TgiError:
        # InferError::ValidationError: "Input validation error: {0}", 422 (infer/mod.rs).
        return cls(f"Input validation error: {detail}", "validation", 422, "validation")

    @classmethod
    def overloaded(cls) -> TgiError:
        return cls("Model is overloaded", "overloaded", 429, "overloaded")

    @classmethod
    def incomplete(cls, stream: bool) -> TgiError:
        suffix = (" stream", "_stream") if stream else ("", "")
        msg, kind = f"Incomplete generation{suffix[0]}", f"incomplete_generation{suffix[1]}"
        return cls(msg, kind, 500, "incomplete")


class _Serde(BaseModel):
    # serde ignores unknown fields and does not coerce types ("5" is not a u32).
    model_config = ConfigDict(extra="ignore", strict=True)


class GenerateParameters(_Serde):
    best_of: int | None = Field(default=None, ge=0)
    temperature: float | None = None
    repetition_penalty: float | None = None
    frequency_penalty: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    typical_p: float | None = None
    do_sample: bool = False
    max_new_tokens: int | None = Field(default=None, ge=0, le=_U32)
    return_full_text: bool | None = None
    stop: list[str] = Field(default_factory=list)
    truncate: int | None = Field(default=None, ge=0)
    watermark: bool = False
    details: bool = False
    decoder_input_details: bool = False
    seed: int | None = Field(default=None, ge=0, le=2**64 - 1)
    top_n_tokens: int | None = Field(default=None, ge=0, le=_U32)
    grammar: Any = None
    adapter_id: str | None = None  # unknown adapters fall back to the base model (see tgi_app)


class GenerateRequest(_Serde):
    inputs: str
    parameters: GenerateParameters = Field(default_factory=lambda: GenerateParameters())


class CompatGenerateRequest(GenerateRequest):
    stream: bool = False


class StreamOptions(_Serde):
    # lib.rs `StreamOptions`: `#[serde(default)] include_usage`, so `{}` is accepted.
    include_usage: bool = False


class _Part(_Serde):
    type: str
    text: str | None = None


class ChatMessage(_Serde):
    role: str
    content: str | list[_Part] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text or "" for part in self.content)
        return self.content or ""


class ChatRequest(_Serde):
    model: str | None = None
    messages: list[ChatMessage]
    frequency_penalty: float | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=_U32)
    max_tokens: int | None = Field(default=None, ge=0, le=_U32)
    presence_penalty: float | None = None
    stop: list[str] | None = None
    stream: bool = False
    seed: int | None = Field(default=None, ge=0)
    temperature: float | None = None
    top_p: float | None = None
    # `#[serde(default)] stream_options: StreamOptions`: omitted is the default; null is refused.
    stream_options: StreamOptions = Field(default_factory=StreamOptions)


class CompletionRequest(_Serde):
    model: str | None = None
    prompt: str | Annotated[list[str], Field(min_length=1)]  # an empty array is refused
    max_tokens: int | None = Field(default=None, ge=0, le=_U32)
    temperature: float | None = None
    top_p: float | None = None
    stream: bool = False
    seed: int | None = Field(default=None, ge=0)
    suffix: str | None = None
    repetition_penalty: float | None = None
    frequency_penalty: float | None = None
    stop: list[str] | None = None


@dataclass(frozen=True, slots=True)
class Limits:
    """Router limits (launcher defaults of 3.3: best_of 2, 4 stop sequences, top_n 5)."""

    max_input_tokens: int
    max_total_tokens: int
    max_best_of: int = 2
    max_stop_sequences: int = 4
    max_top_n_tokens: int = 5
    max_client_batch_size: int = 4
    validation_workers: int = 2


@dataclass(frozen=True, slots=True)
class Valid:
    """A request that passed validation: what the queue gets."""

    input_length: int
    max_new_tokens: int  # this segment (at most DEFAULT_GENERATION_LENGTH)
    max_total_new_tokens: int  # the whole request, segments together
    top_n_tokens: int
    seed: int | None  # reported in details only when sampling, as the Python shard does
    sampling: bool = True  # False: greedy (the simulated model's own choices)


# validation.rs: a request generates in segments of at most this many tokens; infer/mod.rs
# re-validates and re-queues it (its text appended to the input) until `max_total_new_tokens`
# (the given max_new_tokens, else max_total_tokens - input) or a failed re-validation.
DEFAULT_GENERATION_LENGTH = 1024


def validate(p: GenerateParameters, inputs: str, input_tokens: int, limits: Limits) -> Valid:
    """`Validation::validate` of router/src/validation.rs, check for check, same messages."""
    best_of = p.best_of or 1
    sampling = p.do_sample or any(
        v is not None for v in (p.temperature, p.top_k, p.top_p, p.typical_p)
    )
    fail = TgiError.validation
    if best_of > 1 and not sampling:
        raise fail("you must use sampling when `best_of` is > 1")
    if (p.temperature if p.temperature is not None else 1.0) <= 0.0:
        raise fail("`temperature` must be strictly positive")
    if (p.repetition_penalty if p.repetition_penalty is not None else 1.0) <= 0.0:
        raise fail("`repetition_penalty` must be strictly positive")
    if not -2.0 <= (p.frequency_penalty or 0.0) <= 2.0:
        raise fail("`frequency_penalty` must be >= -2.0 and <= 2.0")
    if p.top_p is not None and not 0.0 < p.top_p < 1.0:
        raise fail("`top_p` must be > 0.0 and < 1.0")
    if p.typical_p is not None and not 0.0 < p.typical_p < 1.0:
        raise fail("`typical_p` must be > 0.0 and < 1.0")
    if p.top_k is not None and p.top_k <= 0:
        raise fail("`top_k` must be strictly positive")
    if p.max_new_tokens == 0:
        raise fail("`max_new_tokens` must be strictly positive")
    if len(p.stop) > limits.max_stop_sequences:
        raise fail(
            f"`stop` supports up to {limits.max_stop_sequences} stop sequences. "
            f"Given: {len(p.stop)}"
        )
    if p.seed is not None and best_of > 1:
        raise fail("`seed` must not be set when `best_of` > 1")
    top_n = p.top_n_tokens or 0
    if top_n > limits.max_top_n_tokens:
        raise fail(f"`top_n_tokens` must be >= 0 and <= {limits.max_top_n_tokens}. Given: {top_n}")
    if not inputs:
        raise fail("`inputs` cannot be empty")
    if p.truncate is not None and not 0 < p.truncate <= limits.max_input_tokens:
        raise fail(
            "`truncate` must be strictly positive and less than "
            f"{limits.max_input_tokens}. Given: {p.truncate}"
        )
    length = min(input_tokens, p.truncate) if p.truncate else input_tokens
    if p.max_new_tokens is None:
        total_new = max(limits.max_total_tokens - length, 0)
    else:
        total_new = p.max_new_tokens
    max_new = min(total_new, DEFAULT_GENERATION_LENGTH)  # the total check is on this segment
    if length + max_new > limits.max_total_tokens:
        raise fail(
            f"`inputs` tokens + `max_new_tokens` must be <= {limits.max_total_tokens}. "
            f"Given: {length} `inputs` tokens and {max_new} `max_new_tokens`"
        )
    if length > limits.max_input_tokens:
        raise fail(
            f"`inputs` must have less than {limits.max_input_tokens} tokens. Given: {length}"
        )
    seed = p.seed if p.seed is not None else random.getrandbits(64)
    return Valid(
        max(length, 1),
        max(max_new, 1),
        max(total_new, 1),
        top_n,
        seed if sampling else None,
        sampling,
    )


def error_body(message: str, error_type: str) -> _Json:
    return {"error": message, "error_type": error_type}


def chat_error(message: str) -> _Json:
    """Chat stream errors: a nested object whose status is hard-coded to 422 (STACKS.md 2.3)."""
    return {"error": {"message": message, "http_status_code": 422}}


def token(token_id: int, text: str, logprob: float) -> _Json:
    return {"id": token_id, "text": text, "logprob": logprob, "special": False}


def usage(prompt_tokens: int, completion_tokens: int) -> _Json:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _logprobs(tok: _Json, top: list[_Json]) -> _Json:
    tops = [{"token": t["text"], "logprob": t["logprob"]} for t in top]
    return {"content": [{"token": tok["text"], "logprob": tok["logprob"], "top_logprobs": tops}]}


def chat_chunk(
    head: _Json,
    content: str | None,
    finish_reason: str | None,
    logprobs: tuple[_Json, list[_Json]] | None = None,
) -> _Json:
    """`CompletionType::ChatCompletionChunk`: the `object` tag first, `usage` always (null).

    `head` is `{"id": "", "created": ..., "model": ..., "system_fingerprint": ...}`.
    """
    delta = {"role": "assistant", "content": content or ""}
    choice = {
        "index": 0,
        "delta": delta,
        "logprobs": _logprobs(*logprobs) if logprobs else None,
        "finish_reason": finish_reason,
    }
    return {"object": "chat.completion.chunk", **head, "choices": [choice], "usage": None}


def chat_usage_chunk(head: _Json, use: _Json) -> _Json:
    return {"object": "chat.completion.chunk", **head, "choices": [], "usage": use}


def chat_completion(head: _Json, text: str, finish_reason: str, use: _Json) -> _Json:
    message = {"role": "assistant", "content": text}
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
    return {"object": "chat.completion", **head, "choices": [choice], "usage": use}


def _completion_choice(text: str, finish_reason: str) -> _Json:
    return {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}


def completion_chunk(head: _Json, text: str) -> _Json:
    """`Completion::Chunk`: `finish_reason` is "" and `choices` precedes `model` (lib.rs)."""
    return {
        "object": "text_completion",
        "id": head["id"],
        "created": head["created"],
        "choices": [_completion_choice(text, "")],
        "model": head["model"],
        "system_fingerprint": head["system_fingerprint"],
    }


def completion_final(head: _Json, text: str, finish_reason: str, use: _Json) -> _Json:
    """`Completion::Final`: the last stream chunk and the non-streaming body, with usage."""
    choices = [_completion_choice(text, finish_reason)]
    return {"object": "text_completion", **head, "choices": choices, "usage": use}


def info_body(model_id: str, version: str, max_concurrent_requests: int, limits: Limits) -> _Json:
    """`Info` of lib.rs in field order; sha and docker_label are build-time env (absent: null)."""
    return {
        "model_id": model_id,
        "model_sha": None,
        "model_pipeline_tag": "text-generation",
        "max_concurrent_requests": max_concurrent_requests,
        "max_best_of": limits.max_best_of,
        "max_stop_sequences": limits.max_stop_sequences,
        "max_input_tokens": limits.max_input_tokens,
        "max_total_tokens": limits.max_total_tokens,
        "validation_workers": limits.validation_workers,
        "max_client_batch_size": limits.max_client_batch_size,
        "router": "text-generation-router",
        "version": version,
        "sha": None,
        "docker_label": None,
    }


def models_body(model_id: str) -> _Json:
    card = {"id": model_id, "object": "model", "created": 0, "owned_by": model_id}
    return {"object": "list", "data": [card]}


def tokenize_body(text: str) -> list[_Json]:
    """`TokenizeResponse`: a bare list of `SimpleToken {id, text, start, stop}` (char offsets)."""
    pairs = zip(token_ids(text), _TOKEN_RE.finditer(text), strict=True)
    return [{"id": i, "text": m.group(), "start": m.start(), "stop": m.end()} for i, m in pairs]


def prefill_tokens(scored: list[TokenLogprob]) -> list[_Json]:
    """`PrefillToken {id, text, logprob}` of each prompt token (`decoder_input_details`); the
    first has no logprob: NaN in the shard (flash_causal_lm.py), which serde writes as null.
    Log-probs are f32 in the router: 4 decimals keep serde's and Python's forms the same."""
    return [
        {
            "id": t.token_id,
            "text": t.text,
            "logprob": None if t.logprob is None else round(t.logprob, 4),
        }
        for t in scored
    ]


def completions_problem(suffix: str | None, prompts: int, limits: Limits) -> _Json | None:
    """The checks /v1/completions makes before generating (server.rs), as an error body."""
    if suffix is not None:
        msg = "Suffix is not supported and can be achieved by preprocessing the prompt."
        return error_body(msg, "suffix not supported")
    batch = limits.max_client_batch_size
    if prompts > batch:
        msg = f"Number of prompts exceeds the maximum allowed batch size of {batch}"
        return error_body(msg, "batch size exceeded")
    if prompts > 1:  # TGI fans the prompts out; the simulator serves one per request
        msg = "The simulator serves one prompt per completions request"
        return error_body(msg, "batch size exceeded")
    return None


def make_token(text: str, logprob: float | None = None) -> _Json:
    """A generated one-piece `Token`; its made-up logprob has few digits, so serde's f32 form
    and Python's float repr agree."""
    token_id = token_ids(text)[0]
    made_up = -round(0.05 + (token_id % 997) / 400, 4)
    return token(token_id, text, made_up if logprob is None else logprob)


@dataclass(frozen=True, slots=True)
class RequestTimings:
    """Router timings of one request (seconds): start -> queued -> batch start -> end."""

    total_s: float
    validation_s: float
    queue_s: float
    inference_s: float
    generated_tokens: int

    @property
    def time_per_token_s(self) -> float:
        return self.inference_s / self.generated_tokens


def _millis(seconds: float) -> str:
    return str(round(seconds * 1e9) // 1_000_000)  # Duration::as_millis truncates


def timing_headers(
    t: RequestTimings, characters: int, prompt_tokens: int, *, compute_time: bool = True
) -> dict[str, str]:
    """`generate_internal`'s headers: x-compute-time in seconds (f64), the others in whole ms.

    /v1/completions sums them per prompt and leaves x-compute-time out (`compute_time=False`).
    """
    headers = {"x-compute-type": "gpu+optimized"}  # env COMPUTE_TYPE, by default
    if compute_time:
        headers["x-compute-time"] = rust_float(round(t.total_s, 9))
    return headers | {
        "x-compute-characters": str(characters),
        "x-total-time": _millis(t.total_s),
        "x-validation-time": _millis(t.validation_s),
        "x-queue-time": _millis(t.queue_s),
        "x-inference-time": _millis(t.inference_s),
        "x-time-per-token": _millis(t.time_per_token_s),
        "x-prompt-tokens": str(prompt_tokens),
        "x-generated-tokens": str(t.generated_tokens),
    }


def stream_event(
    index: int, tok: _Json, top: list[_Json], text: str | None, details: _Json | None
) -> _Json:
    """`StreamResponse`: `top_tokens` is skipped when empty; the last one has text (+details)."""
    event: _Json = {"index": index, "token": tok}
    if top:
        event["top_tokens"] = top
    return event | {"generated_text": text, "details": details}


def generate_body(
    text: str, seed: int | None, prefill: list[_Json], steps: list[tuple[_Json, list[_Json]]]
) -> _Json:
    """`GenerateResponse` + `Details` from (token, top tokens) pairs; empty lists skipped."""
    details = {"finish_reason": "length", "generated_tokens": len(steps), "seed": seed}
    details |= {"prefill": prefill, "tokens": [tok for tok, _ in steps]}
    if any(top for _, top in steps):
        details["top_tokens"] = [top for _, top in steps]
    return {"generated_text": text, "details": details}
