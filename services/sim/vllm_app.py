"""The simulated vLLM HTTP server: OpenAI-compatible routes, SSE streaming and `/metrics`.

Handlers only translate between the wire format (`vllm_protocol`) and the engine; each SSE
event is written, through the stream tap (services/stream_tap.py), as soon as its token is due.
The shared OpenAI HTTP layer (services/openai_http.py) parses requests, applies vLLM 0.33's
length rules and answers errors. Text comes from the simulated model (`textmodel.py`): its
greedy choices at temperature 0, seeded words otherwise; completions answer `echo`, `logprobs`
and `prompt_logprobs` as vLLM 0.33 does (`completion/serving.py`: `echo` with `max_tokens` 0
returns the prompt alone, though one token is generated and counted in usage), on
non-streaming requests (streaming them is not simulated: 400).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from services.openai_http import (
    MALFORMED_EVENT,
    SSE_CONTENT_TYPE,
    HttpError,
    LengthLimits,
    error_middleware,
    fit_max_tokens,
    injected_error,
    json_response,
    parse_body,
)
from services.openai_wire import (
    VLLM_033,
    Json,
    TokenLogprob,
    completion_logprobs,
    prompt_logprobs,
)
from services.sim.config import SimSettings
from services.sim.engine import SimEngine, SimSequence
from services.sim.faults import FaultPlan, fault_middleware
from services.sim.textmodel import text_model_for
from services.sim.tokens import (
    GENERATED_WORDS,
    chat_token_ids,
    decode,
    last_token_ids,
    pieces,
    token_ids,
    words,
)
from services.sim.vllm_protocol import (
    DONE,
    ChatCompletionRequest,
    CompletionRequest,
    ContentEvents,
    DetokenizeRequest,
    TokenizeRequest,
    chat_chunk,
    chat_pairs,
    chat_response,
    chat_usage,
    completion_chunk,
    completion_response,
    error_body,
    fingerprint,
    models_body,
    response_head,
    sse,
    usage,
    usage_chunk,
)
from services.stream_tap import Event, EventWriter, tap_of

__all__ = ["GENERATION_PATHS", "VLLM_VERSION", "create_vllm_app"]

VLLM_VERSION = "0.33.0"
GENERATION_PATHS = ("/v1/completions", "/v1/chat/completions")
_COMPLETIONS_DEFAULT_MAX_TOKENS = 16  # CompletionRequest.max_tokens (completion/protocol.py)
_Send = Callable[..., Awaitable[None]]  # (data, tokens=0, due=None)


class _VllmHandlers:
    def __init__(self, settings: SimSettings, engine: SimEngine, registry: CollectorRegistry):
        self._settings = settings
        self._engine = engine
        self._registry = registry
        self._model = settings.served_model_name
        self._created = int(time.time())
        self._requests = 0
        self._lm = text_model_for(settings)
        config = settings.model_dump_json(include={"stack", "quant", "gpu", "max_model_len"})
        self.fingerprint = fingerprint(VLLM_VERSION, config)

    def _check_model(self, name: str | None) -> None:
        if name is not None and name != self._model:
            raise HttpError(404, f"The model `{name}` does not exist.", "NotFoundError", "model")

    async def completions(self, request: web.Request) -> web.StreamResponse:
        arrival = self._engine.now()
        req = await parse_body(request, CompletionRequest)
        self._check_model(req.model)
        requested = _COMPLETIONS_DEFAULT_MAX_TOKENS if req.max_tokens is None else req.max_tokens
        if req.stream and (req.echo or req.logprobs is not None):
            raise HttpError(
                400, "the simulator does not stream `echo` or `logprobs`", "BadRequestError"
            )
        if req.echo and requested == 0:
            requested = 1  # `echo_without_generation`: vLLM samples one token, shows none
        limits = LengthLimits(req.prompt_tokens(), requested, req.min_tokens)
        return await self._generate(request, req, arrival, limits)

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        arrival = self._engine.now()
        req = await parse_body(request, ChatCompletionRequest)
        self._check_model(req.model)
        param = "max_tokens" if req.max_completion_tokens is None else "max_completion_tokens"
        requested = req.max_completion_tokens or req.max_tokens
        limits = LengthLimits(req.prompt_tokens(), requested, req.min_tokens, param)
        return await self._generate(request, req, arrival, limits)

    async def _generate(
        self,
        request: web.Request,
        req: CompletionRequest | ChatCompletionRequest,
        arrival: float,
        limits: LengthLimits,
    ) -> web.StreamResponse:
        max_tokens = fit_max_tokens(limits, self._settings.max_model_len)
        text = self._text(req, limits.prompt_tokens)
        tap = tap_of(request)
        if tap is not None:
            tap.admitted(limits.prompt_tokens, max_tokens, arrival)
        ids = _prompt_ids(req) if self._engine.caches_prefixes else None
        seq = self._engine.submit(limits.prompt_tokens, max_tokens, arrival, ids)
        try:
            if req.stream:
                return await self._stream(request, req, seq, text)
            async for _ in seq:
                pass
            if seq.finished_reason == "error":
                raise HttpError(500, "Internal server error", "InternalServerError")
            generated = [next(text) for _ in range(seq.generated)]
            content = "".join(generated)
            assert seq.finished_reason is not None
            use = usage(seq.prompt_tokens, seq.generated)
            request_id = request.headers.get("X-Request-Id")
            if isinstance(req, ChatCompletionRequest):
                head = response_head("chatcmpl", "chat.completion", self._model, request_id)
                return json_response(chat_response(head, content, seq.finished_reason, use))
            head = response_head("cmpl", "text_completion", self._model, request_id)
            if req.echo or req.logprobs is not None or req.scores_prompt:
                shown = [] if req.echo and req.max_tokens == 0 else generated
                body = self._scored(head, req, shown, seq.finished_reason, use)
                return json_response(body)
            return json_response(completion_response(head, content, seq.finished_reason, use))
        finally:
            # Client gone (write failed or handler cancelled): vLLM aborts it, without stats.
            self._engine.cancel(seq)
            if tap is not None:
                tap.finished(seq.finished_reason)

    def _text(
        self, req: CompletionRequest | ChatCompletionRequest, prompt_tokens: int
    ) -> Iterator[str]:
        """The generated tokens: the simulated model's greedy choices at temperature 0 (the
        same on every simulator of the same quantization), else seeded words."""
        seed = self._settings.seed * 1_000_003 + self._requests
        self._requests += 1
        if req.temperature != 0:
            return words(seed)
        if isinstance(req, ChatCompletionRequest):  # a chat prompt ends in the assistant header
            return self._lm.greedy(chat_token_ids([])[-2:], prompt_tokens)
        if isinstance(req.prompt, list):
            return self._lm.greedy(req.prompt[-2:], len(req.prompt))
        return self._lm.greedy(last_token_ids(req.prompt), prompt_tokens)

    def _scored(
        self, head: Json, req: CompletionRequest, shown: list[str], finish: str, use: Json
    ) -> Json:
        """A completion with `echo`/`logprobs`/`prompt_logprobs`, as
        `request_output_to_completion_response` builds it."""
        ids, texts, prompt_text = _prompt_pieces(req.prompt)
        generated = [token_ids(piece)[0] for piece in shown]
        widest = len(GENERATED_WORDS)  # -1 asks for every candidate: all the model has
        asked = [n for n in (req.logprobs, req.prompt_logprobs) if n is not None]
        top_n = max((widest if n == -1 else n for n in asked), default=0)
        scored = self._lm.score([*ids, *generated], [*texts, *shown], top_n)
        prompt_part: list[TokenLogprob] = scored[: len(ids)]
        text = (prompt_text if req.echo else "") + "".join(shown)
        logprobs = None
        if req.logprobs is not None:
            tokens = scored if req.echo else scored[len(ids) :]
            n = widest if req.logprobs == -1 else req.logprobs
            logprobs = completion_logprobs(tokens, n, as_ids=bool(req.return_tokens_as_token_ids))
        prompt_scores = None
        if req.scores_prompt:
            asked_prompt = req.prompt_logprobs if req.prompt_logprobs is not None else req.logprobs
            assert asked_prompt is not None
            prompt_scores = prompt_logprobs(
                prompt_part, widest if asked_prompt == -1 else asked_prompt
            )
        return completion_response(head, text, finish, use, logprobs, prompt_scores)

    async def _stream(
        self,
        request: web.Request,
        req: CompletionRequest | ChatCompletionRequest,
        seq: SimSequence,
        text: Iterator[str],
    ) -> web.StreamResponse:
        """vLLM's stream generators (`completion/serving.py`, `chat_completion/serving.py`):
        the chat role chunk with the first output, a chunk per token, the finish reason on the
        last one (also "abort" when the engine aborted), the usage chunk, then `[DONE]`; an
        engine failure ("error") becomes an error event."""
        chat = isinstance(req, ChatCompletionRequest)
        request_id = request.headers.get("X-Request-Id")
        if chat:
            head = response_head("chatcmpl", "chat.completion.chunk", self._model, request_id)
        else:
            head = response_head("cmpl", "text_completion", self._model, request_id)
        continuous = req.continuous_usage
        content = ContentEvents(head, chat, seq.prompt_tokens if continuous else None)
        resp = web.StreamResponse(headers={"Content-Type": SSE_CONTENT_TYPE})
        # With include_usage the usage chunk carries the fingerprint, else the last chunk does.
        last_stamp = None if req.include_usage else self.fingerprint
        send = EventWriter(request, resp.write)

        def use_at(n: int) -> Json | None:
            if not continuous:
                return None
            return (chat_usage if chat else usage)(seq.prompt_tokens, n)

        try:
            await resp.prepare(request)
            n = 0
            last = seq.max_tokens
            async for batch in seq.batches():  # tokens produced together go out in one write
                events: list[Event] = []
                for event in batch:
                    n += 1
                    if chat and n == 1:
                        events.append((self._role_chunk(head, use_at(0)), 0, None))
                    if n != last:
                        events.append((content(next(text), n), 1, event.due))
                        continue
                    if chat:
                        data = chat_chunk(head, {"content": next(text)}, "length", use=use_at(n),
                                          fingerprint=last_stamp, style=VLLM_033)  # fmt: skip
                    else:
                        data = completion_chunk(head, next(text), "length", use=use_at(n),
                                                fingerprint=last_stamp, style=VLLM_033)  # fmt: skip
                    events.append((sse(data), 1, event.due))
                await send.write_all(events)
            if seq.finished_reason == "abort" and not seq.cancelled:
                await self._abort_chunk(send, head, chat, n, use_at(n), last_stamp)
            if seq.finished_reason == "error":  # _raise_if_error -> GenerationError
                await send(sse(error_body("Internal server error", "InternalServerError", 500)))
            elif req.include_usage:
                use = usage(seq.prompt_tokens, n)
                await send(sse(usage_chunk(head, use, self.fingerprint)))
            await send(DONE)
            await resp.write_eof()
        except ConnectionResetError:
            pass  # the client disconnected (or an injected cut); `_generate` cancels the sequence
        return resp

    def _role_chunk(self, head: Json, use: Json | None) -> bytes:
        role = {"role": "assistant", "content": ""}
        return sse(chat_chunk(head, role, None, use=use, style=VLLM_033, role=True))

    async def _abort_chunk(
        self, send: _Send, head: Json, chat: bool, n: int, use: Json | None, stamp: str | None
    ) -> None:
        """The engine aborted: one more chunk, empty, with finish_reason "abort" (the output
        processor's final abort output, `v1/engine/output_processor.py::abort_requests`)."""
        if chat:
            if n == 0:
                await send(self._role_chunk(head, use))
            delta: Json = {"content": ""} if n else {}  # chat_completion/stream_processor.py
            chunk = chat_chunk(head, delta, "abort", use=use, fingerprint=stamp, style=VLLM_033)
        else:
            chunk = completion_chunk(head, "", "abort", use=use, fingerprint=stamp, style=VLLM_033)
        await send(sse(chunk))

    async def tokenize(self, request: web.Request) -> web.StreamResponse:
        req = await parse_body(request, TokenizeRequest)
        self._check_model(req.model)
        if req.messages is not None:
            ids = chat_token_ids(chat_pairs(req.messages))
        else:
            ids = [token_id for token_id, _ in pieces(req.prompt or "")]
        body = {"count": len(ids), "max_model_len": self._settings.max_model_len, "tokens": ids}
        body["token_strs"] = [f"<{i}>" for i in ids] if req.return_token_strs else None
        return json_response(body)

    async def detokenize(self, request: web.Request) -> web.StreamResponse:
        """`/detokenize`: the stand-in tokenizer's ids are hashes, so only pieces this process
        has tokenized can be given back (simulated limitation: 400 for the others)."""
        req = await parse_body(request, DetokenizeRequest)
        self._check_model(req.model)
        text = decode(req.tokens)
        if text is None:
            raise HttpError(
                400,
                "the simulated tokenizer can only decode ids it returned from /tokenize",
                "BadRequestError",
                "tokens",
            )
        return json_response({"prompt": text})

    async def models(self, request: web.Request) -> web.StreamResponse:
        return json_response(models_body(self._model, self._settings.max_model_len, self._created))

    async def health(self, request: web.Request) -> web.StreamResponse:
        return web.Response(status=200)

    async def version(self, request: web.Request) -> web.StreamResponse:
        return json_response({"version": VLLM_VERSION})

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        body = generate_latest(self._registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def create_vllm_app(
    settings: SimSettings,
    engine: SimEngine,
    metrics_registry: CollectorRegistry,
    faults: FaultPlan | None = None,
) -> web.Application:
    """An aiohttp application answering like `vllm serve` 0.33 (STACKS.md section 1).

    The engine is closed (live requests failed) when the application shuts down.
    """
    handlers = _VllmHandlers(settings, engine, metrics_registry)
    middlewares: list[Middleware] = [error_middleware]
    if faults is not None:
        middlewares.append(
            fault_middleware(faults, GENERATION_PATHS, injected_error, MALFORMED_EVENT)
        )
    app = web.Application(middlewares=middlewares, client_max_size=64 * 1024**2)
    app.router.add_post("/v1/completions", handlers.completions)
    app.router.add_post("/v1/chat/completions", handlers.chat_completions)
    app.router.add_post("/tokenize", handlers.tokenize)
    app.router.add_post("/detokenize", handlers.detokenize)
    app.router.add_get("/v1/models", handlers.models)
    app.router.add_get("/health", handlers.health)
    app.router.add_get("/ping", handlers.health)
    app.router.add_get("/version", handlers.version)
    app.router.add_get("/metrics", handlers.metrics)

    async def _close_engine(_: web.Application) -> None:
        await engine.aclose()

    app.on_shutdown.append(_close_engine)
    return app


def _prompt_ids(req: CompletionRequest | ChatCompletionRequest) -> list[int]:
    """The prompt's token ids (the templated chat prompt), for the engine's prefix cache."""
    if isinstance(req, ChatCompletionRequest):
        return chat_token_ids(chat_pairs(req.messages))
    return list(req.prompt) if isinstance(req.prompt, list) else token_ids(req.prompt)


def _prompt_pieces(prompt: str | list[int]) -> tuple[list[int], list[str], str]:
    """A completion prompt's ids, token texts and text (ids: what the tokenizer remembers)."""
    if isinstance(prompt, str):
        found = pieces(prompt)
        return [i for i, _ in found], [t for _, t in found], prompt
    texts = [decode([i]) or f"<{i}>" for i in prompt]
    return list(prompt), texts, " ".join(texts)
