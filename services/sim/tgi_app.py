"""The simulated TGI 3.3 router: native and OpenAI-compatible routes, axum SSE and `/metrics`.

Every request is admitted in `_admit` (TGI's `--max-concurrent-requests` semaphore) and every
streamed event leaves through `_send_event` (services/stream_tap.py): one place each where the
simulator's fault layer can act and count.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncGenerator, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from services.sim import tgi_protocol as wire
from services.sim.config import SimSettings
from services.sim.engine import BatchingEngine, SimEngine
from services.sim.faults import FaultPlan, fault_middleware
from services.sim.textmodel import text_model_for
from services.sim.tgi_metrics import TgiMetrics
from services.sim.tgi_protocol import GenerateParameters, RequestTimings, TgiError
from services.sim.tokens import (
    chat_prompt_tokens,
    chat_token_ids,
    count_tokens,
    last_token_ids,
    pieces,
    words,
)
from services.stream_tap import StreamTap, tap_of, write_event

__all__ = ["KEEP_ALIVE_INTERVAL_S", "TGI_VERSION", "create_tgi_sim_app", "tgi_metrics_for"]

TGI_VERSION = "3.3.6-dev0"
KEEP_ALIVE_INTERVAL_S = 15.0  # axum KeepAlive::new(): `:\n\n` after 15 s without an event
# axum's `Sse` sets the first two; generate_stream_internal adds the x-* headers.
_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
_SSE_HEADERS |= {"x-compute-type": "gpu+optimized", "X-Accel-Buffering": "no"}
_M = TypeVar("_M", bound=BaseModel)
_Json = dict[str, Any]


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=wire.dumps(obj), status=status, headers=headers, content_type="application/json"
    )


def _error(err: TgiError) -> web.Response:
    return _json(wire.error_body(err.message, err.error_type), err.status)


def _native_error(err: TgiError) -> bytes:
    return wire.sse(wire.error_body(err.message, err.error_type))


def _chat_template(pairs: list[tuple[str, str]]) -> str:
    """A Llama-3 style templated prompt (for `x-compute-characters`; tokens come from tokens.py)."""
    turns = "".join(f"<|start_header_id|>{r}<|end_header_id|>\n\n{t}<|eot_id|>" for r, t in pairs)
    return turns + "<|start_header_id|>assistant<|end_header_id|>\n\n"


@dataclass
class _Job:
    """One generation as the router holds it after parsing (`GenerateRequest`)."""

    inputs: str
    input_tokens: int
    params: GenerateParameters
    arrival: float
    stream: bool
    full_text: bool = False  # return_full_text, resolved
    tap: StreamTap | None = None  # see services/stream_tap.py
    last_ids: list[int] | None = None  # the prompt's last token ids (default: from `inputs`)

    def greedy_context(self) -> tuple[list[int], int]:
        """What the simulated model's greedy continuation starts from: last ids, length."""
        ids = self.last_ids if self.last_ids is not None else last_token_ids(self.inputs)
        return ids, self.input_tokens


@dataclass
class _Step:
    """One generated token; the last one also carries what TGI's `End` message has."""

    index: int
    token: _Json
    top_tokens: list[_Json]
    input_length: int
    due: float  # when the engine produced the token
    text: str | None = None  # generated text (prompt included when asked): last step only
    seed: int | None = None
    timings: RequestTimings | None = None


class _EventStream:
    """One SSE response; axum sends a keep-alive comment after `interval_s` without events."""

    def __init__(
        self, request: web.Request, response: web.StreamResponse, interval_s: float
    ) -> None:
        self.request, self.response, self._interval_s = request, response, interval_s
        self._loop = asyncio.get_running_loop()
        self._last = self._loop.time()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        await self.response.prepare(self.request)
        self._last = self._loop.time()
        self._task = self._loop.create_task(self._keep_alive())

    async def write(self, data: bytes) -> None:
        async with self._lock:
            await self.response.write(data)
            self._last = self._loop.time()

    async def _keep_alive(self) -> None:
        with contextlib.suppress(ConnectionError):
            while True:
                await asyncio.sleep(max(0.0, self._last + self._interval_s - self._loop.time()))
                if self._loop.time() - self._last >= self._interval_s:
                    await self.write(wire.KEEP_ALIVE)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


class _TgiHandlers:
    def __init__(
        self, settings: SimSettings, engine: SimEngine, metrics: TgiMetrics, keep_alive_s: float
    ) -> None:
        self._settings, self._engine, self._metrics = settings, engine, metrics
        self._limits = wire.Limits(
            max_input_tokens=settings.input_token_limit,  # --max-input-tokens
            max_total_tokens=settings.max_model_len,  # --max-total-tokens
        )
        self.keep_alive_s = keep_alive_s
        self._model = settings.served_model_name
        self._in_flight = 0
        self._requests = 0
        self._lm = text_model_for(settings)

    # Parsing, admission, generation ---------------------------------------------------------
    async def _parse(self, request: web.Request, model: type[_M]) -> _M:
        """axum's `Json` extractor: its rejections are plain text, before the handler runs."""
        if not request.content_type.endswith(("/json", "+json")):
            text = "Expected request with `Content-Type: application/json`"
            raise web.HTTPUnsupportedMediaType(text=text)
        body = await request.read()
        try:
            json.loads(body)
        except ValueError as exc:
            text = f"Failed to parse the request body as JSON: {exc}"
            raise web.HTTPBadRequest(text=text) from exc
        try:
            return model.model_validate_json(body)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            text = (
                f"Failed to deserialize the JSON body into the target type: {where}: {err['msg']}"
            )
            raise web.HTTPUnprocessableEntity(text=text) from exc

    def _fail(self, err: TgiError) -> TgiError:
        if err.failure is not None:
            self._metrics.request_failed(err.failure)
        return err

    def _admit(self) -> Callable[[], None]:
        """The single admission point: the semaphore's `try_acquire_owned` (infer/mod.rs).

        Returns the permit's release function, to call exactly once.
        """
        if self._in_flight >= self._settings.max_concurrent_requests:
            raise self._fail(TgiError.overloaded())
        self._in_flight += 1

        def release() -> None:
            self._in_flight -= 1

        return release

    async def _send_event(
        self, stream: _EventStream, data: bytes, step: _Step | None = None
    ) -> None:
        """The single point every streamed event (and `[DONE]`) is written through; `step`: the
        generated token this event carries, if any."""
        due = None if step is None else step.due
        await write_event(stream.request, stream.write, data, tokens=int(step is not None), due=due)

    async def _generate(self, job: _Job) -> AsyncGenerator[_Step, None]:
        """generate_stream_internal + Infer::generate_stream: count, admit, validate, queue."""
        self._metrics.request_received()
        p, best_of = job.params, job.params.best_of or 1
        if job.stream and best_of != 1:
            msg = "`best_of` != 1 is not supported when streaming tokens"
            raise self._fail(TgiError.validation(msg))
        if job.stream and p.decoder_input_details:
            msg = "`decoder_input_details` == true is not supported when streaming tokens"
            raise self._fail(TgiError.validation(msg))
        if not job.stream and best_of > self._limits.max_best_of:
            # validate_best_of (no failure metric). best_of=2 runs as one sequence here.
            msg = f"`best_of` must be > 0 and <= {self._limits.max_best_of}. Given: {best_of}"
            raise TgiError.validation(msg)
        release = self._admit()
        try:
            try:
                valid = wire.validate(p, job.inputs, job.input_tokens, self._limits)
            except TgiError as err:
                raise self._fail(err) from None
            self._metrics.request_validated(valid.input_length, valid.max_new_tokens)
            if job.tap is not None:
                job.tap.admitted(valid.input_length, valid.max_total_new_tokens, job.arrival)
            async for step in self._steps(job, valid):
                yield step
        finally:
            release()

    async def _steps(self, job: _Job, valid: wire.Valid) -> AsyncGenerator[_Step, None]:
        """Generate in segments of at most 1024 tokens, as `Infer::generate_stream` does: a
        segment that ends by length before `max_total_new_tokens` is re-validated with its text
        appended to the input and queued again; if that validation fails, it ends there."""
        stream_id = self._settings.seed * 1_000_003 + self._requests
        self._requests += 1
        text, alternatives = words(stream_id), words(stream_id + 500_009)
        if not valid.sampling:  # greedy: the simulated model's own choices
            text = self._lm.greedy(*job.greedy_context())
        pieces: list[str] = []
        input_length, segment = valid.input_length, valid.max_new_tokens
        started: float | None = None
        queued = self._engine.now()
        while True:
            seq = self._engine.submit(input_length, segment, job.arrival if not pieces else None)
            try:
                async for event in seq:
                    pieces.append(next(text))
                    tok = wire.make_token(pieces[-1])
                    alts = [
                        wire.make_token(next(alternatives), round(tok["logprob"] - k, 4))
                        for k in range(1, valid.top_n_tokens)
                    ]
                    top = [tok, *alts] if valid.top_n_tokens else []
                    step = _Step(len(pieces), tok, top, valid.input_length, event.due)
                    if started is None:
                        started = max(seq.admitted if seq.admitted is not None else queued, queued)
                    if seq.generated == seq.max_tokens:
                        more = self._continue(job, valid, input_length + seq.generated, pieces)
                        if more is None:
                            step.timings = self._end(job, queued, started, event.due, len(pieces))
                            step.text = (job.inputs if job.full_text else "") + "".join(pieces)
                            step.seed = valid.seed
                            yield step
                            return
                        input_length, segment = more
                    yield step
            finally:
                self._engine.cancel(seq)  # a no-op once finished; else counted as dropped
                if job.tap is not None:
                    job.tap.finished(seq.finished_reason)
            if seq.finished_reason != "length":  # aborted by the engine, or shutting down
                raise self._fail(TgiError.incomplete(job.stream))

    def _continue(
        self, job: _Job, valid: wire.Valid, input_length: int, pieces: list[str]
    ) -> tuple[int, int] | None:
        """The next segment's (input length, max_new_tokens), or None: the request ends."""
        if len(pieces) >= valid.max_total_new_tokens:
            return None
        try:
            again = wire.validate(job.params, job.inputs, input_length, self._limits)
        except TgiError:
            return None  # "Failed to continue request": ends with what it has (no failure)
        self._metrics.request_validated(again.input_length, again.max_new_tokens)
        return again.input_length, again.max_new_tokens

    def _end(
        self, job: _Job, queued: float, started: float, due: float, generated: int
    ) -> RequestTimings:
        end = max(self._engine.now(), due)  # timers wake a little early
        timings = (end - job.arrival, queued - job.arrival, started - queued, end - started)
        result = RequestTimings(*timings, generated_tokens=generated)
        self._metrics.request_succeeded(result)
        return result

    async def _collect(self, request: web.Request, job: _Job) -> list[_Step]:
        job.tap = tap_of(request)
        async with contextlib.aclosing(self._generate(job)) as steps:
            return [step async for step in steps]

    async def _stream(
        self,
        request: web.Request,
        job: _Job,
        render: Callable[[_Step], Iterable[bytes]],
        render_error: Callable[[TgiError], bytes],
        trailer: bytes = b"",
    ) -> web.StreamResponse:
        """The SSE answer of every streaming route: HTTP 200 first, errors as events."""
        headers = _SSE_HEADERS | {"x-compute-characters": str(len(job.inputs))}
        stream = _EventStream(request, web.StreamResponse(headers=headers), self.keep_alive_s)
        job.tap = tap_of(request)
        try:
            await stream.open()
            try:
                async with contextlib.aclosing(self._generate(job)) as steps:
                    async for step in steps:
                        for k, data in enumerate(render(step)):
                            await self._send_event(stream, data, None if k else step)
            except TgiError as err:
                await self._send_event(stream, render_error(err))
            if trailer:
                await self._send_event(stream, trailer)
            stream.stop()
            await stream.response.write_eof()
        except ConnectionError:
            pass  # the client went away; `_generate` aborted the sequence
        finally:
            stream.stop()
        return stream.response

    # Native routes ------------------------------------------------------------------------------
    def _job(self, req: wire.GenerateRequest, arrival: float, stream: bool, full: bool) -> _Job:
        given = req.parameters.return_full_text
        full = full if given is None else given
        return _Job(req.inputs, count_tokens(req.inputs), req.parameters, arrival, stream, full)

    async def _native(
        self, request: web.Request, job: _Job, *, wrap: bool = False
    ) -> web.StreamResponse:
        if job.stream:

            def render(step: _Step) -> list[bytes]:
                details = None
                if step.timings is not None and job.params.details:
                    details = {"finish_reason": "length", "generated_tokens": step.index}
                    details |= {"seed": step.seed, "input_length": step.input_length}
                event = wire.stream_event(
                    step.index, step.token, step.top_tokens, step.text, details
                )
                return [wire.sse(event)]

            return await self._stream(request, job, render, _native_error)
        try:
            steps = await self._collect(request, job)
        except TgiError as err:
            return _error(err)
        last = steps[-1]
        assert last.timings is not None and last.text is not None
        body: _Json = {"generated_text": last.text}
        if job.params.details or job.params.decoder_input_details:
            prefill = []
            if job.params.decoder_input_details:
                found = pieces(job.inputs)
                scored = self._lm.score([i for i, _ in found], [t for _, t in found])
                prefill = wire.prefill_tokens(scored)
            pairs = [(s.token, s.top_tokens) for s in steps]
            body = wire.generate_body(last.text, last.seed, prefill, pairs)
        headers = wire.timing_headers(last.timings, len(job.inputs), last.input_length)
        return _json([body] if wrap else body, headers=headers)

    async def generate(self, request: web.Request) -> web.StreamResponse:
        arrival = self._engine.now()
        req = await self._parse(request, wire.GenerateRequest)
        return await self._native(request, self._job(req, arrival, False, False))

    async def generate_stream(self, request: web.Request) -> web.StreamResponse:
        arrival = self._engine.now()
        req = await self._parse(request, wire.GenerateRequest)
        return await self._native(request, self._job(req, arrival, True, False))

    async def compat_generate(self, request: web.Request) -> web.StreamResponse:
        """POST /: `return_full_text` defaults to true for a text-generation pipeline tag."""
        arrival = self._engine.now()
        req = await self._parse(request, wire.CompatGenerateRequest)
        return await self._native(request, self._job(req, arrival, req.stream, True), wrap=True)

    # OpenAI-compatible routes ---------------------------------------------------------------
    # `model` other than "tgi" becomes a LoRA adapter_id (lib.rs); an unknown adapter falls back
    # to the base model (`ADAPTER_TO_INDEX.get(r.adapter_id, 0)` in the Python shard's
    # flash_causal_lm.py), so every name is served; huggingface_hub even sends "dummy".
    def _head(self) -> _Json:
        head: _Json = {"id": "", "created": int(time.time()), "model": self._model}
        return head | {"system_fingerprint": f"{TGI_VERSION}-native"}  # version-docker_label

    def _openai_params(
        self, req: wire.ChatRequest | wire.CompletionRequest, **extra: Any
    ) -> GenerateParameters:
        greedy = req.temperature == 0.0  # greedy only when temperature is 0
        return GenerateParameters(
            temperature=None if greedy else req.temperature,
            frequency_penalty=req.frequency_penalty,
            top_p=req.top_p,
            do_sample=not greedy,
            max_new_tokens=req.max_tokens,  # None: up to the context (lib.rs, server.rs)
            stop=req.stop or [],
            details=True,
            decoder_input_details=not req.stream,
            seed=req.seed,
            **extra,
        )

    async def _openai(
        self,
        request: web.Request,
        job: _Job,
        body: Callable[[str, _Json], _Json],
        render: Callable[[_Step], list[bytes]],
        render_error: Callable[[TgiError], bytes],
    ) -> web.StreamResponse:
        if job.stream:
            return await self._stream(request, job, render, render_error, wire.DONE)
        try:
            steps = await self._collect(request, job)
        except TgiError as err:
            return _error(err)
        last = steps[-1]
        assert last.timings is not None
        use = wire.usage(last.input_length, len(steps))
        # /v1/completions sums the headers of its prompts and leaves x-compute-time out.
        completions = request.path == "/v1/completions"
        headers = wire.timing_headers(
            last.timings, len(job.inputs), last.input_length, compute_time=not completions
        )
        return _json(body(last.text or "", use), headers=headers)

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        arrival = self._engine.now()
        req = await self._parse(request, wire.ChatRequest)
        self._metrics.request_received()  # counted here and again in generate_*_internal
        pairs = [(m.role, m.text()) for m in req.messages]
        penalty = None if req.presence_penalty is None else req.presence_penalty + 2.0
        params = self._openai_params(req, repetition_penalty=penalty, top_n_tokens=req.top_logprobs)
        job = _Job(_chat_template(pairs), chat_prompt_tokens(pairs), params, arrival, req.stream)
        job.last_ids = chat_token_ids([])[-2:]  # every chat prompt ends in the assistant header
        include_usage = req.stream_options.include_usage

        def render(step: _Step) -> list[bytes]:
            logprobs = (step.token, step.top_tokens) if req.logprobs else None
            finish = "length" if step.timings is not None else None
            out = [wire.sse(wire.chat_chunk(self._head(), step.token["text"], finish, logprobs))]
            if step.timings is not None and include_usage:
                use = wire.usage(step.input_length, step.index)
                out.append(wire.sse(wire.chat_usage_chunk(self._head(), use)))
            return out

        def body(text: str, use: _Json) -> _Json:
            return wire.chat_completion(self._head(), text, "length", use)

        return await self._openai(
            request, job, body, render, lambda e: wire.sse(wire.chat_error(e.message))
        )

    async def completions(self, request: web.Request) -> web.StreamResponse:
        arrival = self._engine.now()
        req = await self._parse(request, wire.CompletionRequest)
        self._metrics.request_received()  # counted here and again in generate_*_internal
        prompts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
        problem = wire.completions_problem(req.suffix, len(prompts), self._limits)
        if problem is not None:
            self._metrics.request_failed("validation")
            return _json(problem, 422)
        params = self._openai_params(req)
        job = _Job(prompts[0], count_tokens(prompts[0]), params, arrival, req.stream)

        def body(text: str, use: _Json) -> _Json:
            return wire.completion_final(self._head(), text, "length", use)

        def render(step: _Step) -> list[bytes]:
            if step.timings is None:
                return [wire.sse(wire.completion_chunk(self._head(), step.token["text"]))]
            return [wire.sse(body(step.token["text"], wire.usage(step.input_length, step.index)))]

        return await self._openai(request, job, body, render, _native_error)

    # Info routes ----------------------------------------------------------------------------------
    async def tokenize(self, request: web.Request) -> web.StreamResponse:
        req = await self._parse(request, wire.GenerateRequest)
        return _json(wire.tokenize_body(req.inputs))

    async def info(self, request: web.Request) -> web.StreamResponse:
        mcr = self._settings.max_concurrent_requests
        return _json(wire.info_body(self._model, TGI_VERSION, mcr, self._limits))

    async def models(self, request: web.Request) -> web.StreamResponse:
        return _json(wire.models_body(self._model))

    async def health(self, request: web.Request) -> web.StreamResponse:
        return web.Response(status=200)

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text=self._metrics.render(), content_type="text/plain")


MALFORMED_EVENT = b'data:{"index":\n\n'  # injected: an event that is not valid JSON


def _injected_error(status: int) -> web.Response:
    body = json.dumps({"error": "Injected fault (simulated)", "error_type": "injected"})
    return web.Response(text=body, status=status, content_type="application/json")


def tgi_metrics_for(settings: SimSettings) -> TgiMetrics:
    """The metrics page of a TGI router with these limits (its token histograms' buckets)."""
    return TgiMetrics(
        max_input_tokens=settings.input_token_limit, max_total_tokens=settings.max_model_len
    )


def create_tgi_sim_app(
    settings: SimSettings,
    engine: SimEngine,
    metrics: TgiMetrics,
    faults: FaultPlan | None = None,
    *,
    keep_alive_s: float = KEEP_ALIVE_INTERVAL_S,
) -> web.Application:
    """An aiohttp application answering like TGI 3.3's router (STACKS.md section 2).

    `--max-input-tokens`/`--max-total-tokens`/`--max-concurrent-requests` come from
    `settings` (compose's values by default). The engine must report to `metrics`; it is
    closed when the application shuts down. `faults` reaches every generation route.
    """
    budget = settings.max_model_len * settings.max_concurrent_requests  # fixed timing: no KV
    if isinstance(engine, BatchingEngine):
        budget = engine.profile.kv_cache_tokens
    metrics.set_max_batch_total_tokens(budget)
    h = _TgiHandlers(settings, engine, metrics, keep_alive_s)
    # `--payload-limit` defaults to 2 MB; aiohttp answers 413 beyond it, as axum does.
    posts = {"/": h.compat_generate, "/generate": h.generate, "/generate_stream": h.generate_stream}
    posts |= {"/v1/chat/completions": h.chat_completions, "/v1/completions": h.completions}
    middlewares = []
    if faults is not None:
        middlewares.append(fault_middleware(faults, posts, _injected_error, MALFORMED_EVENT))
    app = web.Application(middlewares=middlewares, client_max_size=2_000_000)
    gets = {"/": h.health, "/info": h.info, "/health": h.health, "/ping": h.health}
    gets |= {"/metrics": h.metrics, "/v1/models": h.models}
    for path, handler in (posts | {"/tokenize": h.tokenize}).items():
        app.router.add_post(path, handler)
    for path, handler in gets.items():
        app.router.add_get(path, handler)

    async def _close_engine(_: web.Application) -> None:
        await engine.aclose()

    app.on_shutdown.append(_close_engine)
    return app
