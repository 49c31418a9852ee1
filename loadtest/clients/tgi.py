"""TGI's native `/generate_stream`: `data:` without a space, keep-alive comments, no `[DONE]`.

Each event is one token; the final one carries `generated_text` (and `details` with the
server's token count) and ends the stream; an `error` event inside the HTTP 200 stream is
how TGI reports overload and validation failures. TGI cannot pin the output length, so the
record keeps the real count and the report compares targets' lengths.
"""

from __future__ import annotations

from typing import Any

from loadtest.clients.base import EventMeaning, StreamingClient
from loadtest.workload import GenRequest

__all__ = ["TgiClient"]


class TgiClient(StreamingClient):
    @property
    def path(self) -> str:
        return "/generate_stream"

    def body(self, request: GenRequest) -> dict[str, Any]:
        return {
            "inputs": request.prompt,
            "parameters": {"max_new_tokens": request.max_tokens, "details": True},
        }

    def interpret(self, event: dict[str, Any]) -> EventMeaning:
        if "error" in event:
            kind = event.get("error_type")
            return EventMeaning(error=f"{kind}: {event['error']}" if kind else str(event["error"]))
        token = event.get("token")
        text = token.get("text") if isinstance(token, dict) else None
        done = event.get("generated_text") is not None
        details = event.get("details")
        generated = details.get("generated_tokens") if isinstance(details, dict) else None
        prompt = details.get("input_length") if isinstance(details, dict) else None
        return EventMeaning(
            tokens=1 if text else 0,
            done=done,
            output_tokens=generated if isinstance(generated, int) else None,
            prompt_tokens=prompt if isinstance(prompt, int) else None,
        )
