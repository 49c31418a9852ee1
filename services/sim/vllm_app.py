"""The simulated vLLM HTTP server: OpenAI-compatible routes, SSE streaming and `/metrics`.

Handlers only translate between the wire format (`vllm_protocol`) and the engine; each SSE
event is written as soon as its token is due.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Iterator
from http import HTTPStatus
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, ValidationError

from services.sim.config import SimSettings
from services.sim.engine import SimEngine, SimSequence
from services.sim.fault_layer import StreamFaults, fault_middleware, stream_faults
from services.sim.faults import Delivery, FaultPlan
from services.sim.tokens import chat_token_ids, token_ids, words
from services.sim.vllm_protocol import (
    DONE,
    ChatCompletionRequest,
    CompletionRequest,
    ContentEvents,
    TokenizeRequest,
    chat_chunk,
    chat_pairs,
    chat_response,
    completion_chunk,
    completion_response,
    error_body,
    models_body,
    response_head,
    sse,
    usage,
    usage_chunk,
)

__all__ = ["VLLM_VERSION", "create_vllm_app"]

VLLM_VERSION = "0.33.0"
_SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"  # what Starlette sends for vLLM
_COMPLETIONS_DEFAULT_MAX_TOKENS = 16
MALFORMED_EVENT = b'data: {"id":"cmpl-\n\n'  # injected: an event that is not valid JSON
_M = TypeVar("_M", bound=BaseModel)
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _HttpError(Exception):
    def __init__(self, status: int, message: str, err_type: str, param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.err_type, self.param = status, message, err_type, param


def _bad_request(message: str) -> _HttpError:
    return _HttpError(400, message, "Bad Request")


def _json(obj: Any, status: int = 200) -> web.Response:
    body = json.dumps(obj, separators=(",", ":")).encode()
    return web.Response(body=body, status=status, content_type="application/json")


@web.middleware
async def _error_middleware(request: web.Request, handler: _Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except _HttpError as exc:
        return _json(error_body(exc.message, exc.err_type, exc.status, exc.param), exc.status)


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        parts.append(f"{where}: {err['msg']}" if where else err["msg"])
    return "; ".join(parts)


class _VllmHandlers:
    def __init__(
        self,
        settings: SimSettings,
        engine: SimEngine,
        registry: CollectorRegistry,
        faults: FaultPlan | None,
    ):
        self._settings = settings
        self._engine = engine
        self._faults = faults
        self._registry = registry
        self._model = settings.served_model_name
        self._created = int(time.time())
        self._requests = 0

    async def _parse(self, request: web.Request, model: type[_M]) -> _M:
        try:
            body = json.loads(await request.read())
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
            raise _bad_request(f"Invalid JSON body: {exc}") from exc
        try:
            return model.model_validate(body)
        except ValidationError as exc:
            raise _bad_request(_describe(exc)) from exc

    def _check_model(self, name: str | None) -> None:
        if name is not None and name != self._model:
            raise _HttpError(404, f"The model `{name}` does not exist.", "NotFoundError", "model")

    def _check_length(self, prompt_tokens: int, max_tokens: int | None) -> int:
        limit = self._settings.max_model_len
        if prompt_tokens == 0:
            raise _bad_request("The decoder prompt cannot be empty")
        if prompt_tokens >= limit:
            raise _bad_request(
                f"This model's maximum context length is {limit} tokens. However, your request "
                f"has {prompt_tokens} input tokens. Please reduce the length of the input."
            )
        if max_tokens is None:
            return limit - prompt_tokens
        if prompt_tokens + max_tokens > limit:
            raise _bad_request(
                f"This model's maximum context length is {limit} tokens. However, you requested "
                f"{prompt_tokens + max_tokens} tokens ({prompt_tokens} in the messages, "
                f"{max_tokens} in the completion). Please reduce the length of the messages or "
                "completion."
            )
        return max_tokens

    async def completions(self, request: web.Request) -> web.StreamResponse:
        arrival = self._engine.now()
        req = await self._parse(request, CompletionRequest)
        self._check_model(req.model)
        prompt = req.prompt_tokens()
        requested = req.max_tokens or _COMPLETIONS_DEFAULT_MAX_TOKENS
        max_tokens = self._check_length(prompt, requested)
        return await self._generate(request, req, arrival, prompt, max_tokens)

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        arrival = self._engine.now()
        req = await self._parse(request, ChatCompletionRequest)
        self._check_model(req.model)
        prompt = req.prompt_tokens()
        requested = req.max_completion_tokens or req.max_tokens
        max_tokens = self._check_length(prompt, requested)
        return await self._generate(request, req, arrival, prompt, max_tokens)

    async def _generate(
        self,
        request: web.Request,
        req: CompletionRequest | ChatCompletionRequest,
        arrival: float,
        prompt_tokens: int,
        max_tokens: int,
    ) -> web.StreamResponse:
        text = words(self._settings.seed * 1_000_003 + self._requests)
        self._requests += 1
        faults = stream_faults(request)
        delivery = faults.delivery if faults else Delivery()
        seq = self._engine.submit(prompt_tokens, max_tokens, arrival)
        try:
            if req.stream:
                return await self._stream(request, req, seq, text, faults, delivery)
            async for event in seq:
                delivery.sent(self._engine.now(), event.due)
            if seq.finished_reason != "length":
                raise _HttpError(500, "The request was aborted.", "InternalServerError")
            content = "".join(next(text) for _ in range(seq.generated))
            use = usage(prompt_tokens, seq.generated)
            if isinstance(req, ChatCompletionRequest):
                head = response_head("chatcmpl", "chat.completion", self._model)
                return _json(chat_response(head, content, seq.finished_reason, use))
            head = response_head("cmpl", "text_completion", self._model)
            return _json(completion_response(head, content, seq.finished_reason, use))
        finally:
            # Client gone (write failed or handler cancelled): vLLM counts it as an abort.
            self._engine.abort(seq)
            if faults and self._faults:
                self._faults.record(faults.arrival, faults.fault, seq, delivery, faults.request_id)
                faults.logged = True

    async def _stream(
        self,
        request: web.Request,
        req: CompletionRequest | ChatCompletionRequest,
        seq: SimSequence,
        text: Iterator[str],
        faults: StreamFaults | None,
        delivery: Delivery,
    ) -> web.StreamResponse:
        chat = isinstance(req, ChatCompletionRequest)
        if chat:
            head = response_head("chatcmpl", "chat.completion.chunk", self._model)
        else:
            head = response_head("cmpl", "text_completion", self._model)
        content = ContentEvents(head, chat)
        resp = web.StreamResponse(headers={"Content-Type": _SSE_CONTENT_TYPE})
        try:
            await resp.prepare(request)
            n = 0
            async for event in seq:
                if faults and not await faults.before_event(request, resp.write):
                    return resp  # injected: the connection dropped mid-stream
                n += 1
                delivery.sent(self._engine.now(), event.due)
                finish = "length" if n == seq.max_tokens else None
                use = usage(seq.prompt_tokens, n) if req.continuous_usage else None
                if chat and n == 1:  # vLLM's role-only first chunk, with the first output
                    role = {"role": "assistant", "content": ""}
                    await resp.write(sse(chat_chunk(head, role, None, use=use)))
                if finish is None and use is None:
                    await resp.write(content(next(text)))
                elif chat:
                    await resp.write(
                        sse(chat_chunk(head, {"content": next(text)}, finish, use=use))
                    )
                else:
                    await resp.write(sse(completion_chunk(head, next(text), finish, use=use)))
            if seq.finished_reason != "length":  # aborted by the server (shutdown)
                error = error_body("The request was aborted.", "InternalServerError", 500)
                await resp.write(sse(error))
            elif req.include_usage:
                await resp.write(sse(usage_chunk(head, usage(seq.prompt_tokens, n))))
            await resp.write(DONE)
            await resp.write_eof()
        except ConnectionResetError:
            pass  # the client disconnected; `_generate` aborts the sequence
        return resp

    async def tokenize(self, request: web.Request) -> web.StreamResponse:
        req = await self._parse(request, TokenizeRequest)
        self._check_model(req.model)
        if req.messages is not None:
            ids = chat_token_ids(chat_pairs(req.messages))
        else:
            ids = token_ids(req.prompt or "")
        body = {"count": len(ids), "max_model_len": self._settings.max_model_len, "tokens": ids}
        body["token_strs"] = [f"<{i}>" for i in ids] if req.return_token_strs else None
        return _json(body)

    async def models(self, request: web.Request) -> web.StreamResponse:
        return _json(models_body(self._model, self._settings.max_model_len, self._created))

    async def health(self, request: web.Request) -> web.StreamResponse:
        return web.Response(status=200)

    async def version(self, request: web.Request) -> web.StreamResponse:
        return _json({"version": VLLM_VERSION})

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        body = generate_latest(self._registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def _injected_error(status: int) -> web.Response:
    phrase = HTTPStatus(status).phrase
    return _json(error_body("Injected fault (simulated)", phrase, status), status)


def create_vllm_app(
    settings: SimSettings,
    engine: SimEngine,
    metrics_registry: CollectorRegistry,
    faults: FaultPlan | None = None,
) -> web.Application:
    """An aiohttp application answering like `vllm serve` 0.33 (STACKS.md section 1).

    The engine is closed (live requests aborted) when the application shuts down.
    """
    handlers = _VllmHandlers(settings, engine, metrics_registry, faults)
    middlewares: list[Middleware] = [_error_middleware]
    if faults is not None:
        paths = ("/v1/completions", "/v1/chat/completions")
        middlewares.append(fault_middleware(faults, paths, _injected_error, MALFORMED_EVENT))
    app = web.Application(middlewares=middlewares, client_max_size=64 * 1024**2)
    app.router.add_post("/v1/completions", handlers.completions)
    app.router.add_post("/v1/chat/completions", handlers.chat_completions)
    app.router.add_post("/tokenize", handlers.tokenize)
    app.router.add_get("/v1/models", handlers.models)
    app.router.add_get("/health", handlers.health)
    app.router.add_get("/ping", handlers.health)
    app.router.add_get("/version", handlers.version)
    app.router.add_get("/metrics", handlers.metrics)

    async def _close_engine(_: web.Application) -> None:
        await engine.aclose()

    app.on_shutdown.append(_close_engine)
    return app
