"""The OpenAI-compatible HTTP layer of the ExLlamaV2 server, over any `Engine`.

Every generation request passes `_Server.admit` and every streamed byte `_Server.send`, which
writes through the stream tap seam (services/stream_tap.py) so whoever builds the app (the
simulator) can watch and disturb streams; metrics are measured here from the engine's results.
Parsing, errors and vLLM's length rules are the shared OpenAI layer's (services/openai_http.py).
This package never imports the simulator.
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

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
from services.openai_http import (
    SSE_CONTENT_TYPE,
    HttpError,
    LengthLimits,
    error_middleware,
    fit_max_tokens,
    json_response,
    parse_body,
)
from services.openai_wire import completion_logprobs, prompt_logprobs
from services.stream_tap import tap_of, write_event

__all__ = ["GENERATION_PATHS", "SERVER_VERSION", "Admitted", "HttpError", "create_app"]

SERVER_VERSION = "0.1.0"
GENERATION_PATHS = ("/v1/completions", "/v1/chat/completions")
_log = logging.getLogger("services.exllamav2")
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _EngineFailed(Exception):
    """The engine raised while a job was being iterated (not a client write failure)."""

    def log(self, where: str) -> None:
        # `EngineError` is the engine refusing on purpose (closing at shutdown): not a crash.
        level = logging.INFO if isinstance(self.__cause__, EngineError) else logging.ERROR
        _log.log(level, "generation failed %s: %s", where, self)


def _auth_middleware(api_key: str) -> Middleware:
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
        param = "max_tokens"
        try:
            if chat:
                req = chat_req = await parse_body(request, ChatCompletionRequest)
                self._check_model(req.model)
                ids = self._engine.encode_chat(chat_req.pairs())
                requested = chat_req.requested_max_tokens()
                if chat_req.max_completion_tokens is not None:
                    param = "max_completion_tokens"
            else:
                req = text_req = await parse_body(request, CompletionRequest)
                self._check_model(req.model)
                prompt = text_req.prompt
                ids = list(prompt) if isinstance(prompt, list) else self._engine.encode(prompt)
                requested = text_req.max_tokens
                if requested is None:
                    requested = self._config.completions_default_max_tokens
                elif requested == 0 and text_req.echo:
                    requested = 1  # the prompt alone, scored (`_score`): only its length counts
        except EngineError as exc:  # e.g. the chat template refused the messages
            raise HttpError(400, str(exc), "BadRequestError") from exc
        limits = LengthLimits(len(ids), requested, req.min_tokens, param)
        max_tokens = fit_max_tokens(limits, self._engine.max_seq_len)
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
        tap = tap_of(request)
        if tap is not None:  # its arrival is on the metrics' clock, not the loop's
            tap.admitted(len(ids), max_tokens, None)
        return Admitted(chat, req, job, arrival)

    async def send(
        self,
        request: web.Request,
        resp: web.StreamResponse,
        data: bytes,
        result: JobResult | None = None,
    ) -> None:
        """Write one SSE event (or the `[DONE]` marker); `result`: the tokens it carries."""
        tokens, due = (0, None) if result is None else (result.token_count, result.due)
        await write_event(request, resp.write, data, tokens=tokens, due=due)

    # -- generation --

    async def completions(self, request: web.Request) -> web.StreamResponse:
        adm = await self.admit(request, chat=False)
        if isinstance(adm.req, CompletionRequest) and adm.req.scores_prompt:
            return self._score(request, adm, adm.req)
        return await self._generate(request, adm)

    def _score(
        self, request: web.Request, adm: Admitted, req: CompletionRequest
    ) -> web.StreamResponse:
        """vLLM's prompt scoring: `echo` with `max_tokens` 0 answers the prompt with its
        `logprobs` and/or `prompt_logprobs`, nothing generated. Log-probs of generated tokens
        (and echo with generation) are not offered: one clear 400 instead of a partial answer.
        Not a generation: it leaves the generation metrics alone."""
        if req.stream:
            raise HttpError(
                400, "echo, logprobs and prompt_logprobs are not available when streaming",
                "BadRequestError", "stream",
            )  # fmt: skip
        if not (req.echo and req.max_tokens == 0):
            raise HttpError(
                400,
                "this server scores prompts only: send echo=true with max_tokens=0 (and logprobs "
                "or prompt_logprobs); log-probs of generated tokens are not available",
                "BadRequestError",
                "max_tokens",
            )
        top_n = max(req.logprobs or 0, req.prompt_logprobs or 0)
        try:
            tokens = self._engine.prompt_logprobs(adm.job.input_ids, top_n)
        except EngineError as exc:
            raise HttpError(400, str(exc), "BadRequestError", "prompt") from exc
        prompt = req.prompt
        text = prompt if isinstance(prompt, str) else "".join(t.text for t in tokens)
        logprobs = None
        if req.logprobs is not None:
            as_ids = req.return_tokens_as_token_ids
            logprobs = completion_logprobs(tokens, req.logprobs, as_ids=as_ids)
        scores = None
        if req.prompt_logprobs is not None:
            scores = prompt_logprobs(tokens, req.prompt_logprobs)
        head = response_head(
            "cmpl", "text_completion", self._model, request.headers.get("X-Request-Id")
        )
        use = usage(adm.prompt_tokens, 0)
        return json_response(completion_response(head, text, "length", None, use, logprobs, scores))

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
            return await self._collect(request, adm, job, meter)
        finally:
            # Client gone (write failed or handler cancelled): cancel the job, count an abort.
            meter.finish("abort")
            await job.cancel()
            tap = tap_of(request)
            if tap is not None:
                tap.finished(meter.finished)

    async def _collect(
        self, request: web.Request, adm: Admitted, job: EngineJob, meter: RequestMeter
    ) -> web.Response:
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
        request_id = request.headers.get("X-Request-Id")
        if adm.chat:
            head = response_head("chatcmpl", "chat.completion", self._model, request_id)
            return json_response(chat_response(head, "".join(texts), reason, end.stop_string, use))
        head = response_head("cmpl", "text_completion", self._model, request_id)
        body = completion_response(head, "".join(texts), reason, end.stop_string, use)
        return json_response(body)

    async def _stream(
        self, request: web.Request, adm: Admitted, job: EngineJob, meter: RequestMeter
    ) -> web.StreamResponse:
        request_id = request.headers.get("X-Request-Id")
        if adm.chat:
            head = response_head("chatcmpl", "chat.completion.chunk", self._model, request_id)
        else:
            head = response_head("cmpl", "text_completion", self._model, request_id)
        resp = web.StreamResponse(headers={"Content-Type": SSE_CONTENT_TYPE})
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
                        chunk = completion_chunk(head, result.text, fin, stop_reason=stop)
                        await self.send(request, resp, sse(chunk), result)
                        continue
                    if not role_sent:  # vLLM's role-only first chunk, with the first output
                        role = {"role": "assistant", "content": ""}
                        await self.send(request, resp, sse(chat_chunk(head, role, None)))
                        role_sent = True
                    delta = {"content": result.text}
                    chunk = chat_chunk(head, delta, fin, stop_reason=stop)
                    await self.send(request, resp, sse(chunk), result)
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
        req = await parse_body(request, TokenEncodeRequest)
        if isinstance(req.text, str):
            ids = self._engine.encode(req.text)
        else:
            ids = self._engine.encode_chat([(m.role, m.text()) for m in req.text])
        return json_response({"tokens": ids, "length": len(ids)})

    async def models(self, request: web.Request) -> web.StreamResponse:
        self._require_loaded()
        return json_response(models_body(self._model, self._engine.max_seq_len, self._created))

    async def health(self, request: web.Request) -> web.StreamResponse:
        if self._engine.is_loaded:
            return json_response({"status": "ok"})
        return json_response({"status": "loading"}, 503)

    async def version(self, request: web.Request) -> web.StreamResponse:
        return json_response({"version": SERVER_VERSION, "engine": self._engine.engine_version})

    async def info(self, request: web.Request) -> web.StreamResponse:
        """The resolved engine settings (context, KV cache size and how it was chosen, ...);
        quantbench records this in run.json. Partial while the model loads."""
        body = {
            "model": self._model,
            "version": SERVER_VERSION,
            "engine": self._engine.engine_version,
            "loaded": self._engine.is_loaded,
            **self._engine.info(),
        }
        return json_response(body)

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


def create_app(
    engine: Engine,
    config: AppConfig,
    registry: CollectorRegistry,
    *,
    environ: Mapping[str, str] | None = None,
    middlewares: Sequence[Middleware] = (),
    started_at: float | None = None,
) -> web.Application:
    """The server's aiohttp application; raises `Exl2ConfigError` if the API key is unset.

    It does not load the engine (the caller does, while `/health` answers 503); it closes the
    engine, failing live requests, when the application shuts down. `middlewares` run inside
    the error and authentication ones (the simulator passes its fault layer there, see
    services/stream_tap.py); `started_at` is the process start a simulated restart reports.
    """
    api_key = resolve_api_key(config, os.environ if environ is None else environ)
    server = _Server(engine, config, registry, started_at)
    stack: list[Middleware] = [error_middleware]
    if api_key:
        stack.append(_auth_middleware(api_key))
    app = web.Application(middlewares=[*stack, *middlewares], client_max_size=64 * 1024**2)
    app.router.add_post("/v1/completions", server.completions)
    app.router.add_post("/v1/chat/completions", server.chat_completions)
    app.router.add_post("/v1/token/encode", server.token_encode)
    app.router.add_get("/v1/models", server.models)
    app.router.add_get("/health", server.health)
    app.router.add_get("/version", server.version)
    app.router.add_get("/info", server.info)
    app.router.add_get("/metrics", server.metrics)

    async def _close_engine(_: web.Application) -> None:
        await engine.close()

    app.on_shutdown.append(_close_engine)
    return app
