"""OpenAI completions and chat streams (vLLM, the ExLlamaV2 server, TGI's OpenAI routes).

Framing quirks are the shared loop's; here: the role-only first chat delta carries no token,
usage may come in a `choices: []` chunk, on the last chunk (TGI) or on every chunk (vLLM's
`continuous_usage_stats`, which gives each event's exact token count), and `[DONE]` ends it.
A request whose server ended generation early is `aborted`: vLLM 0.33 ends an engine-aborted
request with a normal chunk whose `finish_reason` is "abort" and then usage and `[DONE]`
(`entrypoints/openai/*/serving.py` raise only on "error"), and a stream with fewer tokens
than the length this client pinned (`min_tokens` = `max_tokens`) did not do what was asked.

Only the fields below are decoded; vLLM's `id`, `model`, `logprobs`, `token_ids`, null
`kv_transfer_params` and the rest are skipped by the decoder without being built.
"""

from __future__ import annotations

from typing import Any

import msgspec

from loadtest.clients.base import EventMeaning, RequestContext, StreamingClient
from loadtest.workload import GenRequest

__all__ = ["OpenAIClient", "RequestContext"]

_PATHS = {"completions": "/v1/completions", "chat": "/v1/chat/completions"}
_PINNING_STACKS = ("vllm", "exllamav2")


class _Delta(msgspec.Struct):
    content: Any = None


class _Choice(msgspec.Struct):
    text: Any = None  # completions
    delta: _Delta | None = None  # chat
    finish_reason: Any = None


class _Usage(msgspec.Struct):
    prompt_tokens: Any = None
    completion_tokens: Any = None


class _Chunk(msgspec.Struct):
    choices: list[_Choice] | None = None
    usage: _Usage | None = None
    error: Any = msgspec.UNSET  # present at all (even null): an error event


class OpenAIClient(StreamingClient[_Chunk]):
    event_type = _Chunk
    done_marker = b"[DONE]"
    early_finish_reasons = frozenset({"abort", "error"})

    @property
    def path(self) -> str:
        return _PATHS[self._workload.endpoint]

    def body(self, request: GenRequest) -> dict[str, Any]:
        stream_options: dict[str, bool] = {"include_usage": True}
        body: dict[str, Any] = {
            "model": self._endpoint.model,
            "max_tokens": request.max_tokens,
            "stream": True,
            "stream_options": stream_options,
            "temperature": 0.0,
        }
        if request.messages is not None:  # a conversation: its whole history
            body["messages"] = [{"role": r, "content": c} for r, c in request.messages]
        elif self._workload.endpoint == "chat":
            body["messages"] = [{"role": "user", "content": request.prompt}]
        else:
            body["prompt"] = request.prompt
        if self.pinned_tokens(request) is not None:
            # Pin the output length so every target generates the same number of tokens.
            body["ignore_eos"] = True
            body["min_tokens"] = request.max_tokens
        if self._endpoint.stack == "vllm":
            stream_options["continuous_usage_stats"] = True  # exact tokens per event
        return body

    def pinned_tokens(self, request: GenRequest) -> int | None:
        return request.max_tokens if self._endpoint.stack in _PINNING_STACKS else None

    def interpret(self, event: _Chunk) -> EventMeaning:
        if event.error is not msgspec.UNSET:
            return EventMeaning(error=str(event.error))
        text, finish = False, None
        for choice in event.choices or ():
            piece = choice.text if choice.delta is None else choice.delta.content
            if piece and isinstance(piece, str):
                text = True
            if isinstance(choice.finish_reason, str):
                finish = choice.finish_reason
        usage = event.usage
        if usage is None:
            return EventMeaning(1 if text else 0, False, None, None, None, None, finish)
        completion = _int(usage.completion_tokens)
        return EventMeaning(
            1 if text else 0,
            False,
            completion,
            completion if text else None,  # cumulative: this event's exact token count
            _int(usage.prompt_tokens),
            None,
            finish,
        )


def _int(value: object) -> int | None:
    return value if type(value) is int else None  # not bool, not a string
