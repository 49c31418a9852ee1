"""A simulated ExLlamaV2 engine over the simulator's timing models, and the simulator's app.

`python -m services.sim --stack exllamav2` serves the real server's HTTP layer
(services/exllamav2/app.py) over this engine, so wire format and metrics are the GPU server's
own; every timing is simulated. The simulator depends on the server here, never the reverse.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from services.exllamav2.app import GENERATION_PATHS, create_app
from services.exllamav2.config import AppConfig
from services.exllamav2.engine import EngineError, JobRequest, JobResult, JobStats, TokenLogprob
from services.openai_http import MALFORMED_EVENT, injected_error
from services.sim.config import SimSettings
from services.sim.engine import NullObserver, SimEngine, SimSequence
from services.sim.faults import FaultPlan, fault_middleware
from services.sim.textmodel import text_model_for
from services.sim.tokens import chat_token_ids, decode, pieces, words

__all__ = ["EngineGauges", "SimulatedEngine", "SimulatedJob", "create_exllamav2_sim_app"]


class EngineGauges(NullObserver):
    """Keeps the simulator's latest running/waiting/KV figures for the scrape-time gauges."""

    def __init__(self) -> None:
        self.running = 0
        self.waiting = 0
        self.kv_usage = 0.0

    def on_gauges(self, running: int, waiting: int, kv_usage: float) -> None:
        self.running, self.waiting, self.kv_usage = running, waiting, kv_usage


class SimulatedJob:
    """One simulated sequence seen through exllamav2's result stages.

    The simulator generates exactly `max_new_tokens` (as with a banned EOS), so the last
    result is a `max_new_tokens` eos carrying the final token, as exllamav2 emits it. The
    `started`/`prefill` results are reported when the first token is due. A sequence the
    engine ended early (an injected abort, or closing) fails the job with `EngineError`, as a
    generator failure would.
    """

    def __init__(self, sim: SimEngine, seq: SimSequence, text: Iterator[str]) -> None:
        self._sim = sim
        self._seq = seq
        self._text = text
        self._cancelled = False

    def __aiter__(self) -> AsyncIterator[JobResult]:
        return self._results()

    async def _results(self) -> AsyncIterator[JobResult]:
        seq = self._seq
        n, first, last = 0, 0.0, 0.0
        async for event in seq:
            if n == 0:
                first = event.due
                yield JobResult("started")
                yield JobResult(
                    "prefill", curr_progress=seq.prompt_tokens, max_progress=seq.prompt_tokens
                )
            n += event.n_tokens
            last = event.due
            text = "".join(next(self._text) for _ in range(event.n_tokens))
            if n < seq.max_tokens:
                yield JobResult("streaming", text, event.n_tokens, due=event.due)
                continue
            admitted = seq.arrival if seq.admitted is None else seq.admitted
            end = JobStats(
                eos_reason="max_new_tokens",
                new_tokens=n,
                prompt_tokens=seq.prompt_tokens,
                cached_tokens=0,
                time_enqueued_s=admitted - seq.arrival,
                time_prefill_s=first - admitted,
                time_generate_s=last - first,
            )
            yield JobResult("streaming", text, event.n_tokens, end=end, due=event.due)
            return
        if self._cancelled:
            return
        if seq.finished_reason == "abort":
            raise EngineError("the engine aborted the job (simulated fault)")
        raise EngineError("the simulated engine closed")

    async def cancel(self) -> None:
        self._cancelled = True
        self._sim.cancel(self._seq)  # a finished sequence is left alone


class SimulatedEngine:
    """The `Engine` protocol over `services.sim`'s fixed or continuous-batching timing model.

    Loaded from the start; tokens are the simulator's stand-in tokenizer's (no BOS, like the
    vLLM simulator), stop strings are ignored and the output length is always `max_new_tokens`.
    Greedy jobs (temperature 0) and prompt log-probs come from the simulated model
    (services/sim/textmodel.py); scoring a prompt takes no simulated time.
    """

    def __init__(self, settings: SimSettings, sim: SimEngine, gauges: EngineGauges) -> None:
        """`sim` must report to `gauges` (see `services.sim.personalities`)."""
        self._settings = settings
        self._gauges = gauges
        self._sim = sim
        self._jobs = 0
        self._model = text_model_for(settings)

    @property
    def model_name(self) -> str:
        return self._settings.served_model_name

    @property
    def max_seq_len(self) -> int:
        return self._settings.max_model_len

    @property
    def engine_version(self) -> str:
        return "simulated"

    @property
    def is_loaded(self) -> bool:
        return True

    async def load(self) -> None:
        pass

    async def close(self) -> None:
        await self._sim.aclose()

    def encode(self, text: str) -> list[int]:
        return [token_id for token_id, _ in pieces(text)]  # remembered: scores show the text

    def encode_chat(self, messages: Sequence[tuple[str, str]]) -> list[int]:
        return chat_token_ids(messages)

    def enqueue(self, request: JobRequest) -> SimulatedJob:
        seed = request.seed
        if seed is None:
            seed = self._settings.seed * 1_000_003 + self._jobs
        self._jobs += 1
        try:
            seq = self._sim.submit(len(request.input_ids), request.max_new_tokens)
        except (RuntimeError, ValueError) as exc:
            raise EngineError(str(exc)) from exc
        ids = request.input_ids
        if request.temperature == 0:
            return SimulatedJob(self._sim, seq, self._model.greedy(ids[-2:], len(ids)))
        return SimulatedJob(self._sim, seq, words(seed))

    def prompt_logprobs(self, input_ids: Sequence[int], top_n: int) -> list[TokenLogprob]:
        texts = [decode([i]) or f"<{i}>" for i in input_ids]
        return self._model.score(list(input_ids), texts, top_n)

    def num_running_jobs(self) -> int:
        return self._gauges.running

    def num_pending_jobs(self) -> int:
        return self._gauges.waiting

    def kv_cache_usage(self) -> float:
        return self._gauges.kv_usage

    def info(self) -> dict[str, Any]:
        return {"max_seq_len": self.max_seq_len, "simulated": True}


def create_exllamav2_sim_app(
    settings: SimSettings,
    engine: SimulatedEngine,
    faults: FaultPlan | None = None,
    started_at: float | None = None,
) -> web.Application:
    """The simulated ExLlamaV2 server: the real HTTP layer over `engine`, with the fault layer
    on its generation routes; `started_at` is the process start after a simulated restart."""
    middlewares = []
    if faults is not None:
        middlewares.append(
            fault_middleware(faults, GENERATION_PATHS, injected_error, MALFORMED_EVENT)
        )
    return create_app(
        engine, AppConfig(), CollectorRegistry(), middlewares=middlewares, started_at=started_at
    )
