"""The engine seam: what the HTTP layer needs from an ExLlamaV2-style generator.

Shaped after exllamav2's dynamic generator job API (`ExLlamaV2DynamicJobAsync`: enqueue, async
iteration over `started`/`prefill`/`streaming` results, `cancel`), so the real adapter is a thin
translation and the simulated engine can stand in for it on a CPU.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from services.openai_wire import TokenLogprob

__all__ = [
    "Engine",
    "EngineError",
    "EngineJob",
    "EosReason",
    "JobRequest",
    "JobResult",
    "JobStats",
    "Stage",
    "TokenLogprob",
    "finish_reason",
]

Stage = Literal["started", "prefill", "streaming"]
# exllamav2 generator/dynamic.py, ExLlamaV2DynamicGenerator.iterate() docstring.
EosReason = Literal["stop_token", "stop_string", "max_new_tokens", "end_filter"]


class EngineError(Exception):
    """A job failed inside the engine (generator crashed, engine closed, model not loaded)."""


@dataclass(frozen=True, slots=True)
class JobRequest:
    """One generation job, as `ExLlamaV2DynamicJob(...)` takes it.

    `ban_eos` leaves the EOS tokens out of the stop conditions (TabbyAPI's `ban_eos_token`,
    OpenAI-side `ignore_eos`); `min_new_tokens` suppresses stop tokens until reached. `None`
    sampling fields mean OpenAI's defaults (temperature 1, top_p 1, no top-k).
    """

    input_ids: tuple[int, ...]
    max_new_tokens: int
    min_new_tokens: int = 0
    ban_eos: bool = False
    stop_strings: tuple[str, ...] = ()
    seed: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None


@dataclass(frozen=True, slots=True)
class JobStats:
    """What exllamav2 adds to the `eos` result: why it ended, token counts, phase durations.

    `time_enqueued_s` is enqueue -> first prefill, `time_prefill_s` first prefill -> first
    token, `time_generate_s` first -> last token. `stop_string` is set for a stop string.
    """

    eos_reason: EosReason
    new_tokens: int
    prompt_tokens: int
    cached_tokens: int
    time_enqueued_s: float
    time_prefill_s: float
    time_generate_s: float
    stop_string: str | None = None


@dataclass(frozen=True, slots=True)
class JobResult:
    """One result of a job; `token_count` tokens (decoded to `text`) arrived with it.

    The last result of a finished job is a `streaming` one with `end` set; it may carry the
    final tokens too (exllamav2 emits held text with the `max_new_tokens` eos).
    """

    stage: Stage
    text: str = ""
    token_count: int = 0
    curr_progress: int = 0  # prefill: prompt tokens ingested so far
    max_progress: int = 0  # prefill: prompt tokens to ingest
    end: JobStats | None = None
    due: float | None = None  # a simulated engine: when its timing model produced the tokens

    @property
    def eos(self) -> bool:
        return self.end is not None


def finish_reason(reason: EosReason) -> Literal["stop", "length"]:
    """The OpenAI `finish_reason` of an exllamav2 `eos_reason`."""
    return "length" if reason == "max_new_tokens" else "stop"


class EngineJob(Protocol):
    """A queued job: iterate its results (ending with the eos one), or cancel it.

    Iteration raises `EngineError` if the engine fails or closes under the job. `cancel` is
    safe at any time, also after the job finished.
    """

    def __aiter__(self) -> AsyncIterator[JobResult]: ...

    async def cancel(self) -> None: ...


class Engine(Protocol):
    """A loaded (or loading) model behind a continuous-batching generator.

    `load` may take minutes; until it returns, `is_loaded` is false and only the gauges,
    `model_name` and `engine_version` may be used. The gauges are read at scrape time.
    """

    @property
    def model_name(self) -> str: ...

    @property
    def max_seq_len(self) -> int: ...

    @property
    def engine_version(self) -> str: ...

    @property
    def is_loaded(self) -> bool: ...

    async def load(self) -> None: ...

    async def close(self) -> None: ...

    def encode(self, text: str) -> list[int]:
        """Prompt token ids of a completion prompt (BOS included when the model wants one)."""
        ...

    def encode_chat(self, messages: Sequence[tuple[str, str]]) -> list[int]:
        """Token ids of (role, content) messages under the model's chat template."""
        ...

    def enqueue(self, request: JobRequest) -> EngineJob: ...

    def prompt_logprobs(self, input_ids: Sequence[int], top_n: int) -> list[TokenLogprob]:
        """Each prompt token's log-prob given the tokens before it (None for the first), with
        its rank and the `top_n` best candidates there, from one forward pass over the prompt;
        raises `EngineError` for a prompt it cannot score (too long, not loaded)."""
        ...

    def num_running_jobs(self) -> int: ...

    def num_pending_jobs(self) -> int: ...

    def kv_cache_usage(self) -> float:
        """Fraction 0-1 of KV-cache pages held by running jobs."""
        ...

    def info(self) -> dict[str, Any]:
        """Resolved engine settings for `/info` (context, cache size and its source, ...);
        may be partial until loaded."""
        ...
