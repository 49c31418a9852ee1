"""TGI's native `/generate_stream`: `data:` without a space, keep-alive comments, no `[DONE]`.

Each event is one token; the final one carries `generated_text` (and `details` with the
server's token count) and ends the stream; an `error` event inside the HTTP 200 stream is
how TGI reports overload and validation failures. TGI cannot pin the output length, so the
record keeps the real count and the report compares targets' lengths. Only the fields below
are decoded (not `logprob`, `top_tokens` and the like).
"""

from __future__ import annotations

from typing import Any

import msgspec

from loadtest.clients.base import EventMeaning, StreamingClient
from loadtest.workload import GenRequest

__all__ = ["TgiClient"]


class _Token(msgspec.Struct):
    text: Any = None


class _Details(msgspec.Struct):
    generated_tokens: Any = None
    input_length: Any = None


class _Event(msgspec.Struct):
    token: _Token | None = None
    generated_text: Any = None
    details: _Details | None = None
    error: Any = msgspec.UNSET  # present at all (even null): an error event
    error_type: Any = None


class TgiClient(StreamingClient[_Event]):
    event_type = _Event

    @property
    def path(self) -> str:
        return "/generate_stream"

    def body(self, request: GenRequest) -> dict[str, Any]:
        return {
            "inputs": request.prompt,
            "parameters": {"max_new_tokens": request.max_tokens, "details": True},
        }

    def interpret(self, event: _Event) -> EventMeaning:
        if event.error is not msgspec.UNSET:
            kind = event.error_type
            return EventMeaning(error=f"{kind}: {event.error}" if kind else str(event.error))
        text = event.token.text if event.token is not None else None
        details = event.details
        generated = details.generated_tokens if details is not None else None
        prompt = details.input_length if details is not None else None
        return EventMeaning(
            tokens=1 if text else 0,
            done=event.generated_text is not None,
            output_tokens=generated if isinstance(generated, int) else None,
            prompt_tokens=prompt if isinstance(prompt, int) else None,
        )
