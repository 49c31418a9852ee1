"""The OpenAI-compatible HTTP layer of the ExLlamaV2 server, over any `Engine`.

Every generation request passes `_Server.admit` and every streamed byte `_Server.send` (the
places for fault injection); metrics are measured here from the engine's results.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, TypeVar

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, ValidationError

from services.exllamav2.config import AppConfig, resolve_api_key
from services.exllamav2.engine import (
    Engine,
    EngineError,
    EngineJob,
    JobRequest,
    JobResult,
    finish_reason,
)
from services.exllamav2.metrics import Exl2Metrics, RequestMeter
from services.exllamav2.protocol import (
    DONE,
    ChatCompletionRequest,
    CompletionRequest,
    GenerateRequest,
    TokenEncodeRequest,
    chat_chunk,
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
from services.sim.fault_layer import fault_middleware, stream_faults
from services.sim.faults import FaultPlan

__all__ = ["SERVER_VERSION", "Admitted", "HttpError", "create_app"]

SERVER_VERSION = "0.1.0"
_SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"
_log = logging.getLogger("services.exllamav2")
_M = TypeVar("_M", bound=BaseModel)
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class HttpError(Exception):
    """An error answered as OpenAI's `{"error": {message, type, param, code}}`."""

    def __init__(self, status: int, message: str, err_type: str, param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.err_type, self.param = status, message, err_type, param


class _EngineFailed(Exception):
    """The engine raised while a job was being iterated (not a client write failure)."""

    def log(self, where: str) -> None:
        # `EngineError` is the engine refusing on purpose (closing at shutdown): not a crash.
        level = logging.INFO if isinstance(self.__cause__, EngineError) else logging.ERROR
        _log.log(level, "generation failed %s: %s", where, self)


def _bad_request(message: str, param: str | None = None) -> HttpError:
    return HttpError(400, message, "Bad Request", param)  # vLLM's type for validation errors


def _json(obj: Any, status: int = 200) -> web.Response:
    body = json.dumps(obj, separators=(",", ":")).encode()
    return web.Response(body=body, status=status, content_type="application/json")


@web.middleware
async def _error_middleware(request: web.Request, handler: _Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except HttpError as exc:
        return _json(error_body(exc.message, exc.err_type, exc.status, exc.param), exc.status)
    except web.HTTPException as exc:  # unknown route, wrong method, body too large
        if exc.status < 400:
            raise
        return _json(error_body(exc.reason, exc.reason, exc.status), exc.status)


def _auth_middleware(api_key: str) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def check(request: web.Request, handler: _Handler) -> web.StreamResponse:
        if request.path.startswith("/v1/"):
            bearer = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            sent = request.headers.get("x-api-key") or bearer  # TabbyAPI accepts both
            if not hmac.compare_digest(sent.encode(), api_key.encode()):
                raise HttpError(401, "Invalid or missing API key.", "AuthenticationError")
        return await handler(request)

    return check


@dataclass(frozen=True, slots=True)
class Admitted:
    """A request that passed admission: parsed, tokenized, length-checked, ready to enqueue."""

    chat: bool
    req: GenerateRequest
    job: JobRequest
    arrival: float

    @property
    def prompt_tokens(self) -> int:
        return len(self.job.input_ids)


async def _results(job: EngineJob) -> AsyncIterator[JobResult]:
    """The job's results; an exception from the engine becomes `_EngineFailed`."""
    it = aiter(job)
    while True:
        try:
            result = await anext(it)
        except StopAsyncIteration:
            return
        except Exception as exc:
            raise _EngineFailed(str(exc) or type(exc).__name__) from exc
        yield result


class _Server:
    def __init__(
        self,
        engine: Engine,
        config: AppConfig,
        registry: CollectorRegistry,
        started_at: float | None,
    ) -> None:
        self._engine = engine
        self._config = config
        self._registry = registry
        self._model = engine.model_name
        self._created = int(time.time())
        self._metrics = Exl2Metrics(
            registry, self._model, engine, max_seq_len=engine.max_seq_len, started_at=started_at
        )

    # -- admission and writes: every request and every streamed event goes through these --

    async def admit(self, request: web.Request, chat: bool) -> Admitted:
        """Parse, validate and tokenize a generation request, or raise `HttpError`."""
        arrival = self._metrics.clock()
        self._require_loaded()
        req: GenerateRequest
        try:
            if chat:
                req = chat_req = await _parse(request, ChatCompletionRequest)
                self._check_model(req.model)
                ids = self._engine.encode_chat(chat_req.pairs())
                requested = chat_req.requested_max_tokens()
            else:
                req = text_req = await _parse(request, CompletionRequest)
                self._check_model(req.model)
                prompt = text_req.prompt
                ids = list(prompt) if isinstance(prompt, list) else self._engine.encode(prompt)
                requested = text_req.max_tokens or self._config.completions_default_max_tokens
        except EngineError as exc:  # e.g. the chat template refused the messages
            raise _bad_request(str(exc)) from exc
        max_tokens = self._check_length(len(ids), requested)
        if req.min_tokens > max_tokens:
            raise _bad_request("min_tokens must be <= max_tokens", "min_tokens")
        job = JobRequest(
            input_ids=tuple(ids),
            max_new_tokens=max_tokens,
            min_new_tokens=req.min_tokens,
            ban_eos=req.ignore_eos,
            stop_strings=req.stop_strings(),
            seed=req.seed,
            temperature=req.temperature,
            top_p=req.top_p,
            top_k=req.top_k,
        )
        return Admitted(chat, req, job, arrival)

    async def send(self, request: web.Request, resp: web.StreamResponse, data: bytes) -> None:
        """Write one SSE event (or the `[DONE]` marker) to the client."""
        faults = stream_faults(request)
        if faults is not None and not await faults.before_event(request, resp.write):
            raise ConnectionResetError("injected fault: the connection was cut")
        await resp.write(data)

    # -- generation --

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, await self.admit(request, chat=False))

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, await self.admit(request, chat=True))

    async def _generate(self, request: web.Request, adm: Admitted) -> web.StreamResponse:
        meter = self._metrics.start(adm.prompt_tokens, adm.arrival)
        try:
            job = self._engine.enqueue(adm.job)
        except EngineError as exc:
            meter.finish("error")
            raise HttpError(503, str(exc), "ServiceUnavailableError") from exc
        try:
            if adm.req.stream:
                return await self._stream(request, adm, job, meter)
            return await self._collect(adm, job, meter)
        finally:
            # Client gone (write failed or handler cancelled): cancel the job, count an abort.
            meter.finish("abort")
            await job.cancel()

    async def _collect(self, adm: Admitted, job: EngineJob, meter: RequestMeter) -> web.Response:
        texts: list[str] = []
        end = None
        try:
            async for result in _results(job):
                if result.stage == "streaming" and end is None:
                    meter.on_tokens(result.token_count)
                    texts.append(result.text)
                    end = result.end
        except _EngineFailed as exc:
            exc.log("before the response")
            meter.finish("error")
            raise HttpError(500, f"Generation failed: {exc}", "InternalServerError") from exc
        if end is None:
            meter.finish("error")
            raise HttpError(500, "Generation ended without a result.", "InternalServerError")
        meter.finish("stop", end)
        use = usage(adm.prompt_tokens, end.new_tokens)
        reason = finish_reason(end.eos_reason)
        if adm.chat:
            head = response_head("chatcmpl", "chat.completion", self._model)
            return _json(chat_response(head, "".join(texts), reason, end.stop_string, use))
        head = response_head("cmpl", "text_completion", self._model)
        return _json(completion_response(head, "".join(texts), reason, end.stop_string, use))

    async def _stream(
        self, request: web.Request, adm: Admitted, job: EngineJob, meter: RequestMeter
    ) -> web.StreamResponse:
        if adm.chat:
            head = response_head("chatcmpl", "chat.completion.chunk", self._model)
        else:
            head = response_head("cmpl", "text_completion", self._model)
        resp = web.StreamResponse(headers={"Content-Type": _SSE_CONTENT_TYPE})
        try:
            await resp.prepare(request)
            end, failure, role_sent = None, "Generation ended without a result.", False
            try:
                async for result in _results(job):
                    if result.stage != "streaming" or end is not None:
                        continue
                    meter.on_tokens(result.token_count)
                    end = result.end
                    if end is None and not (result.text or result.token_count):
                        continue  # held text (incomplete character): nothing to send yet
                    fin = finish_reason(end.eos_reason) if end else None
                    stop = end.stop_string if end else None
                    if not adm.chat:
                        await self.send(
                            request,
                            resp,
                            sse(completion_chunk(head, result.text, fin, stop_reason=stop)),
                        )
                        continue
                    if not role_sent:  # vLLM's role-only first chunk, with the first output
                        role = {"role": "assistant", "content": ""}
                        await self.send(request, resp, sse(chat_chunk(head, role, None)))
                        role_sent = True
                    delta = {"content": result.text}
                    await self.send(
                        request, resp, sse(chat_chunk(head, delta, fin, stop_reason=stop))
                    )
            except _EngineFailed as exc:
                exc.log("mid-stream")
                failure = f"Generation failed: {exc}"
            if end is None:
                meter.finish("error")
                await self.send(request, resp, sse(error_body(failure, "InternalServerError", 500)))
            else:
                meter.finish("stop", end)
                if adm.req.include_usage:
                    use = usage(adm.prompt_tokens, end.new_tokens)
                    await self.send(request, resp, sse(usage_chunk(head, use)))
            await self.send(request, resp, DONE)
            await resp.write_eof()
        except ConnectionResetError:
            pass  # the client went away; `_generate` cancels the job
        return resp

    # -- other routes --

    async def token_encode(self, request: web.Request) -> web.StreamResponse:
        self._require_loaded()
        req = await _parse(request, TokenEncodeRequest)
        if isinstance(req.text, str):
            ids = self._engine.encode(req.text)
        else:
            ids = self._engine.encode_chat([(m.role, m.text()) for m in req.text])
        return _json({"tokens": ids, "length": len(ids)})

    async def models(self, request: web.Request) -> web.StreamResponse:
        self._require_loaded()
        return _json(models_body(self._model, self._engine.max_seq_len, self._created))

    async def health(self, request: web.Request) -> web.StreamResponse:
        if self._engine.is_loaded:
            return _json({"status": "ok"})
        return _json({"status": "loading"}, 503)

    async def version(self, request: web.Request) -> web.StreamResponse:
        return _json({"version": SERVER_VERSION, "engine": self._engine.engine_version})

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        body = generate_latest(self._registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    # -- checks --

    def _require_loaded(self) -> None:
        if not self._engine.is_loaded:
            raise HttpError(503, "The model is not loaded yet.", "ServiceUnavailableError")

    def _check_model(self, name: str | None) -> None:
        if name is not None and name != self._model:
            raise HttpError(404, f"The model `{name}` does not exist.", "NotFoundError", "model")

    def _check_length(self, prompt_tokens: int, max_tokens: int | None) -> int:
        limit = self._engine.max_seq_len
        if prompt_tokens == 0:
            raise _bad_request("The prompt cannot be empty.", "prompt")
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
                f"{prompt_tokens + max_tokens} tokens ({prompt_tokens} in the prompt, "
                f"{max_tokens} in the completion). Please reduce the length of the prompt or "
                "completion."
            )
        return max_tokens


async def _parse(request: web.Request, model: type[_M]) -> _M:
    try:
        body = json.loads(await request.read())
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise _bad_request(f"Invalid JSON body: {exc}") from exc
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"])
            parts.append(f"{where}: {err['msg']}" if where else err["msg"])
        raise _bad_request("; ".join(parts)) from exc


MALFORMED_EVENT = b'data: {"id":"cmpl-\n\n'  # injected (simulation): not valid JSON


def _injected_error(status: int) -> web.Response:
    phrase = HTTPStatus(status).phrase
    return _json(error_body("Injected fault (simulated)", phrase, status), status)


def create_app(
    engine: Engine,
    config: AppConfig,
    registry: CollectorRegistry,
    *,
    environ: Mapping[str, str] | None = None,
    faults: FaultPlan | None = None,
    started_at: float | None = None,
) -> web.Application:
    """The server's aiohttp application; raises `Exl2ConfigError` if the API key is unset.

    It does not load the engine (the caller does, while `/health` answers 503); it closes the
    engine, failing live requests, when the application shuts down. `faults` and `started_at`
    (the process start a simulated restart reports) serve the simulator only.
    """
    api_key = resolve_api_key(config, os.environ if environ is None else environ)
    server = _Server(engine, config, registry, started_at)
    middlewares = [_error_middleware] + ([_auth_middleware(api_key)] if api_key else [])
    if faults is not None:  # simulated runs only: see services/sim/fault_layer.py
        paths = ("/v1/completions", "/v1/chat/completions")
        middlewares.append(fault_middleware(faults, paths, _injected_error, MALFORMED_EVENT))
    app = web.Application(middlewares=middlewares, client_max_size=64 * 1024**2)
    app.router.add_post("/v1/completions", server.completions)
    app.router.add_post("/v1/chat/completions", server.chat_completions)
    app.router.add_post("/v1/token/encode", server.token_encode)
    app.router.add_get("/v1/models", server.models)
    app.router.add_get("/health", server.health)
    app.router.add_get("/version", server.version)
    app.router.add_get("/metrics", server.metrics)

    async def _close_engine(_: web.Application) -> None:
        await engine.close()

    app.on_shutdown.append(_close_engine)
    return app
