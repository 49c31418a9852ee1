"""Fixtures of the ExLlamaV2 server tests: a scripted fake engine, in-process apps, a real sim."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from services.exllamav2 import AppConfig, EngineError, JobRequest, JobResult, JobStats, create_app
from services.openai_wire import TokenLogprob, TopLogprob

MODEL = "fake/llama-exl2"


class FakeJob:
    """Emits one token per `itl_s` like exllamav2's results; the 'model' wants to stop (an EOS
    stop token, not streamed) after `eos_after` tokens unless EOS is banned or min not reached."""

    def __init__(self, engine: FakeEngine, request: JobRequest) -> None:
        self.engine = engine
        self.request = request
        self.cancelled = False
        self.closed = False
        self.finished = False

    def __aiter__(self) -> AsyncIterator[JobResult]:
        return self._results()

    def _end(self, reason: Any, n: int) -> JobStats:
        prompt = len(self.request.input_ids)
        return JobStats(reason, n, prompt, 0, 0.001, 0.002, 0.003 * n)

    async def _results(self) -> AsyncIterator[JobResult]:
        req, e = self.request, self.engine
        yield JobResult("started")
        yield JobResult(
            "prefill", curr_progress=len(req.input_ids), max_progress=len(req.input_ids)
        )
        for k in range(1, req.max_new_tokens + 1):
            await asyncio.sleep(e.itl_s)
            if self.closed:
                raise EngineError("engine closed")
            if self.cancelled:
                return
            if e.fail_after is not None and k > e.fail_after:
                raise RuntimeError("CUDA error: an illegal memory access (fake)")
            wants_eos = e.eos_after is not None and k > e.eos_after
            if wants_eos and not req.ban_eos and k > req.min_new_tokens:
                self.finished = True
                yield JobResult("streaming", end=self._end("stop_token", k))
                return
            if k == req.max_new_tokens:
                self.finished = True
                yield JobResult("streaming", f" w{k}", 1, end=self._end("max_new_tokens", k))
                return
            yield JobResult("streaming", f" w{k}", 1)

    async def cancel(self) -> None:
        self.cancelled = True


class FakeEngine:
    """A hand-written `Engine`: BOS + one token per word, a fixed chat template overhead."""

    def __init__(
        self,
        *,
        loaded: bool = True,
        itl_s: float = 0.001,
        eos_after: int | None = None,
        fail_after: int | None = None,
        load_gate: asyncio.Event | None = None,
        load_error: Exception | None = None,
    ) -> None:
        self.loaded = loaded
        self.itl_s = itl_s
        self.eos_after = eos_after
        self.fail_after = fail_after
        self.load_gate = load_gate
        self.load_error = load_error
        self.jobs: list[FakeJob] = []
        self.scored: list[list[int]] = []
        self.closed = False

    model_name = MODEL
    max_seq_len = 64
    engine_version = "fake 1.0"

    @property
    def is_loaded(self) -> bool:
        return self.loaded

    async def load(self) -> None:
        if self.load_gate is not None:
            await self.load_gate.wait()
        if self.load_error is not None:
            raise self.load_error
        self.loaded = True

    async def close(self) -> None:
        self.closed = True
        for job in self.jobs:
            job.closed = True

    def encode(self, text: str) -> list[int]:
        return [1] + [len(w) for w in text.split()]

    def encode_chat(self, messages: Sequence[tuple[str, str]]) -> list[int]:
        return [1, 2] + [t for _, text in messages for t in [3, *self.encode(text)[1:]]]

    def enqueue(self, request: JobRequest) -> FakeJob:
        job = FakeJob(self, request)
        self.jobs.append(job)
        return job

    def prompt_logprobs(self, input_ids: Sequence[int], top_n: int) -> list[TokenLogprob]:
        """Token i has log-prob -i/10 and rank i; candidates are ids 7, 8, ... at -0.01 each
        step; more than 32 tokens is refused, as a model's input limit would."""
        if len(input_ids) > 32:
            raise EngineError("at most 32 tokens")
        self.scored.append(list(input_ids))
        top = tuple(TopLogprob(7 + k, f"c{7 + k}", -0.01 * (k + 1)) for k in range(top_n))
        return [
            TokenLogprob(t, f" t{t}", None if i == 0 else -i / 10, None if i == 0 else i,
                         () if i == 0 else top)
            for i, t in enumerate(input_ids)
        ]  # fmt: skip

    def num_running_jobs(self) -> int:
        return sum(not (j.finished or j.cancelled) for j in self.jobs)

    def num_pending_jobs(self) -> int:
        return 0

    def kv_cache_usage(self) -> float:
        return self.num_running_jobs() / 10

    def info(self) -> dict[str, Any]:
        return {"max_seq_len": self.max_seq_len, "cache_size_tokens": 640}


Client = TestClient[Any, Any]
ClientFn = Callable[[Client, CollectorRegistry, FakeEngine], Awaitable[Any]]


def run_app(
    fn: ClientFn,
    engine: FakeEngine | None = None,
    config: AppConfig | None = None,
    environ: dict[str, str] | None = None,
) -> Any:
    """Run `fn(client, registry, engine)` against `create_app` over a fake engine, in-process."""

    async def main() -> Any:
        fake = engine or FakeEngine()
        registry = CollectorRegistry()
        app = create_app(fake, config or AppConfig(), registry, environ=environ or {})
        async with TestClient(TestServer(app)) as client:
            return await fn(client, registry, fake)

    return asyncio.run(main())
