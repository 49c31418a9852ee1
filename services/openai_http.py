"""The OpenAI-compatible HTTP layer that the vLLM simulator and our ExLlamaV2 server share:
the error type and middleware, JSON responses, request parsing and vLLM 0.33's length rules.

Bodies and messages follow vLLM 0.33 (STACKS.md 1.2-1.3): a pydantic validation failure is
400 with type "Bad Request" (`serve/exception_handling/handlers/validation.py`); a request vLLM
itself refuses is 400 "BadRequestError" (`VLLMValidationError`, `error_response.py`).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from services.openai_wire import error_body

__all__ = [
    "MALFORMED_EVENT",
    "SSE_CONTENT_TYPE",
    "HttpError",
    "LengthLimits",
    "bad_request",
    "error_middleware",
    "fit_max_tokens",
    "injected_error",
    "json_response",
    "parse_body",
]

SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"  # what Starlette sends for vLLM
MALFORMED_EVENT = b'data: {"id":"cmpl-\n\n'  # injected by the simulator: not valid JSON
_M = TypeVar("_M", bound=BaseModel)
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class HttpError(Exception):
    """An error answered as OpenAI's `{"error": {message, type, param, code}}`."""

    def __init__(self, status: int, message: str, err_type: str, param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.err_type, self.param = status, message, err_type, param


def bad_request(message: str, param: str | None = None) -> HttpError:
    """A request the server refuses after parsing it (vLLM's `VLLMValidationError`)."""
    return HttpError(400, message, "BadRequestError", param)


def json_response(obj: Any, status: int = 200) -> web.Response:
    body = json.dumps(obj, separators=(",", ":")).encode()
    return web.Response(body=body, status=status, content_type="application/json")


@web.middleware
async def error_middleware(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """`HttpError`, and aiohttp's own 4xx/5xx (unknown route, wrong method, body too large),
    answered with the OpenAI error body."""
    try:
        return await handler(request)
    except HttpError as exc:
        body = error_body(exc.message, exc.err_type, exc.status, exc.param)
        return json_response(body, exc.status)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return json_response(error_body(exc.reason, exc.reason, exc.status), exc.status)


async def parse_body(request: web.Request, model: type[_M]) -> _M:
    """The request body as `model`, or a 400 "Bad Request" naming each invalid field."""
    try:
        body = json.loads(await request.read())
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise HttpError(400, f"Invalid JSON body: {exc}", "Bad Request") from exc
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"])
            parts.append(f"{where}: {err['msg']}" if where else err["msg"])
        raise HttpError(400, "; ".join(parts), "Bad Request") from exc


@dataclass(frozen=True, slots=True)
class LengthLimits:
    """What one request asks for, as the length rules need it."""

    prompt_tokens: int
    max_tokens: int | None  # None: the rest of the context
    min_tokens: int = 0
    max_tokens_param: str = "max_tokens"  # the field the client used (chat: max_completion_tokens)


def fit_max_tokens(limits: LengthLimits, max_model_len: int) -> int:
    """The output budget vLLM 0.33 grants, or the `HttpError` it answers, check for check.

    A `max_tokens` over the room left in the context is lowered to fit, not refused
    (`serve/utils/api_utils.py::get_max_tokens`); only a `max_tokens` over the whole context
    (`renderers/params.py`), a prompt over it (ibid.), no room left or `min_tokens` above the
    lowered budget (`sampling_params.py`) and an empty prompt (`v1/engine/input_processor.py`)
    are 400s.
    """
    requested, prompt = limits.max_tokens, limits.prompt_tokens
    if requested is not None and requested > max_model_len:
        raise bad_request(
            f"{limits.max_tokens_param}={requested} cannot be greater than "
            f"max_model_len={max_model_len}. Please request fewer output tokens.",
            limits.max_tokens_param,
        )
    if prompt > max_model_len:
        raise bad_request(
            f"This model's maximum context length is {max_model_len} tokens. However, your "
            f"prompt contains {prompt} input tokens, which exceeds this limit even without any "
            "output tokens. Please reduce the length of the input prompt.",
            "input_tokens",
        )
    room = max_model_len - prompt
    max_tokens = room if requested is None else min(room, requested)
    if max_tokens < 1:
        raise bad_request(f"max_tokens must be at least 1, got {max_tokens}.", "max_tokens")
    if limits.min_tokens > max_tokens:
        raise bad_request(
            f"min_tokens must be less than or equal to max_tokens={max_tokens}, "
            f"got {limits.min_tokens}."
        )
    if prompt == 0:
        raise bad_request("The decoder prompt cannot be empty")
    return max_tokens


def injected_error(status: int) -> web.Response:
    """The body of an error the simulator injects (`--error STATUS:RATE`)."""
    phrase = HTTPStatus(status).phrase
    return json_response(error_body("Injected fault (simulated)", phrase, status), status)
