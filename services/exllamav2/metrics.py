"""Prometheus metrics of the ExLlamaV2 server, named and bucketed like vLLM's core set.

Measured by the HTTP layer from the generator's results (so the same code runs on a GPU and in
the simulator): names carry an `exllamav2:` prefix, the one label is `model_name` (as vLLM V0),
and the TTFT/ITL/request bucket families are vLLM 0.33's (STACKS.md section 1.4).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Literal, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.exllamav2.engine import JobStats, finish_reason
from services.process_metrics import register_process_collectors
from services.vllm_buckets import (
    ITL_BUCKETS,
    REQUEST_LATENCY_BUCKETS,
    TTFT_BUCKETS,
    token_buckets,
)

__all__ = [
    "FINISH_REASONS",
    "ITL_BUCKETS",
    "REQUEST_LATENCY_BUCKETS",
    "TTFT_BUCKETS",
    "Exl2Metrics",
    "FinishedReason",
    "GaugeSource",
    "RequestMeter",
    "token_buckets",
]

FinishedReason = Literal["stop", "length", "abort", "error"]
FINISH_REASONS: tuple[FinishedReason, ...] = ("stop", "length", "abort", "error")


_P = "exllamav2:"
_HISTOGRAMS: dict[str, tuple[str, str, str]] = {  # key: (name, bucket family, help)
    "ttft": ("time_to_first_token_seconds", "ttft", "Time to first token in seconds."),
    "itl": ("inter_token_latency_seconds", "itl", "Gap between streamed results, in seconds."),
    "tpot": (
        "request_time_per_output_token_seconds",
        "itl",
        "Mean time per output token of each finished request, in seconds.",
    ),
    "e2e": ("e2e_request_latency_seconds", "req", "End-to-end request latency in seconds."),
    "queue": ("request_queue_time_seconds", "req", "Enqueue to first prefill (time_enqueued)."),
    "prefill": ("request_prefill_time_seconds", "req", "First prefill to first token."),
    "decode": ("request_decode_time_seconds", "req", "First to last token (time_generate)."),
    "inference": ("request_inference_time_seconds", "req", "Prefill plus decode time."),
    "req_prompt": ("request_prompt_tokens", "tok", "Prompt tokens of each request."),
    "req_gen": ("request_generation_tokens", "tok", "Generated tokens of each request."),
}


class GaugeSource(Protocol):
    """Where the gauges are read at scrape time (the engine)."""

    def num_running_jobs(self) -> int: ...
    def num_pending_jobs(self) -> int: ...
    def kv_cache_usage(self) -> float: ...


class Exl2Metrics:
    """The server's series in an injected registry, plus process/platform/GC collectors."""

    def __init__(
        self,
        registry: CollectorRegistry,
        model_name: str,
        gauges: GaugeSource,
        *,
        max_seq_len: int = 4096,
        clock: Callable[[], float] = time.perf_counter,
        started_at: float | None = None,
    ) -> None:
        """`started_at`: a simulated restart's process start time (None: the real one)."""
        self.clock = clock
        register_process_collectors(registry, started_at)  # as vLLM's registry has them
        buckets: dict[str, Sequence[float]] = {
            "ttft": TTFT_BUCKETS,
            "itl": ITL_BUCKETS,
            "req": REQUEST_LATENCY_BUCKETS,
            "tok": token_buckets(max(1, max_seq_len)),
        }
        label = ["model_name"]
        self.h = {
            key: Histogram(_P + name, doc, label, registry=registry, buckets=buckets[fam]).labels(
                model_name
            )
            for key, (name, fam, doc) in _HISTOGRAMS.items()
        }
        for name, doc, read in (
            (
                "num_requests_running",
                "Jobs in the generator's active batch.",
                gauges.num_running_jobs,
            ),
            ("num_requests_waiting", "Jobs pending in the generator.", gauges.num_pending_jobs),
            ("kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent.", gauges.kv_cache_usage),
        ):
            gauge = Gauge(_P + name, doc, label, registry=registry)
            gauge.labels(model_name).set_function(_safe(read))
        self.prompt_tokens = Counter(
            _P + "prompt_tokens", "Number of prefill tokens processed.", label, registry=registry
        ).labels(model_name)
        self.generation_tokens = Counter(
            _P + "generation_tokens", "Number of generated tokens.", label, registry=registry
        ).labels(model_name)
        success = Counter(
            _P + "request_success",
            "Count of finished requests, by finish reason (aborts and errors included).",
            [*label, "finished_reason"],
            registry=registry,
        )
        self.success = {reason: success.labels(model_name, reason) for reason in FINISH_REASONS}

    def start(self, prompt_tokens: int, arrival: float | None = None) -> RequestMeter:
        """A meter for one request that arrived at `arrival` (default: now on `clock`)."""
        return RequestMeter(self, prompt_tokens, self.clock() if arrival is None else arrival)


def _safe(read: Callable[[], float]) -> Callable[[], float]:
    """A scrape-time reader: a failing or non-finite reading exports 0, never a failed scrape."""

    def value() -> float:
        try:
            out = float(read())
        except Exception:  # e.g. the engine is not loaded yet
            return 0.0
        return out if math.isfinite(out) else 0.0

    return value


class RequestMeter:
    """Turns one request's results into observations; `finish` records it exactly once.

    One ITL observation per streamed result that carries tokens (vLLM observes one per engine
    step, not per token); TTFT and e2e run from the request's arrival at the server.
    """

    def __init__(self, metrics: Exl2Metrics, prompt_tokens: int, arrival: float) -> None:
        self._m = metrics
        self.prompt_tokens = prompt_tokens
        self.arrival = arrival
        self.first_token: float | None = None
        self.last_token: float | None = None
        self.tokens = 0
        self.finished: FinishedReason | None = None

    def on_tokens(self, n: int, now: float | None = None) -> None:
        if n <= 0 or self.finished is not None:
            return
        now = self._m.clock() if now is None else now
        if self.first_token is None:
            self.first_token = now
            self._m.h["ttft"].observe(now - self.arrival)
            self._m.prompt_tokens.inc(self.prompt_tokens)
        else:
            assert self.last_token is not None
            self._m.h["itl"].observe(now - self.last_token)
        self.last_token = now
        self.tokens += n
        self._m.generation_tokens.inc(n)

    def finish(
        self, reason: FinishedReason, stats: JobStats | None = None, now: float | None = None
    ) -> None:
        """Record the end: aborts and errors count, with e2e and token counts only."""
        if self.finished is not None:
            return
        now = self._m.clock() if now is None else now
        if stats is not None:
            reason = finish_reason(stats.eos_reason)
            if stats.new_tokens > self.tokens:  # e.g. a stop token, counted but not streamed
                self._m.generation_tokens.inc(stats.new_tokens - self.tokens)
                self.tokens = stats.new_tokens
        self.finished = reason
        h = self._m.h
        self._m.success[reason].inc()
        h["e2e"].observe(now - self.arrival)
        h["req_prompt"].observe(self.prompt_tokens)
        h["req_gen"].observe(self.tokens)
        if stats is None:
            return
        h["queue"].observe(stats.time_enqueued_s)
        h["prefill"].observe(stats.time_prefill_s)
        h["decode"].observe(stats.time_generate_s)
        h["inference"].observe(stats.time_prefill_s + stats.time_generate_s)
        if stats.new_tokens > 1:
            h["tpot"].observe(stats.time_generate_s / (stats.new_tokens - 1))
