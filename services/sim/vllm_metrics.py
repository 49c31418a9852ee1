"""vLLM 0.33 Prometheus metrics, fed by the engine observer hooks.

Names, labels (`model_name`, `engine`) and default bucket bounds follow vLLM 0.33
`v1/metrics/loggers.py` and `v1/metrics/buckets.py` (STACKS.md section 1.4).
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)

from services.process_metrics import register_process_collectors
from services.sim.engine import FinishReason, SimSequence
from services.vllm_buckets import (
    ITERATION_BUCKETS,
    ITL_BUCKETS,
    REQUEST_LATENCY_BUCKETS,
    TTFT_BUCKETS,
    token_buckets,
)

__all__ = [
    "FINISH_REASONS",
    "ITERATION_BUCKETS",
    "ITL_BUCKETS",
    "REQUEST_LATENCY_BUCKETS",
    "TTFT_BUCKETS",
    "VllmMetrics",
    "token_buckets",
]

FINISH_REASONS: tuple[FinishReason, ...] = ("stop", "length", "abort", "error", "repetition")


_HISTOGRAMS: dict[str, tuple[str, str, str]] = {  # key: (name, bucket family, help)
    "ttft": ("vllm:time_to_first_token_seconds", "ttft", "Time to first token in seconds."),
    "itl": ("vllm:inter_token_latency_seconds", "itl", "Inter-token latency in seconds."),
    "tpot": (
        "vllm:request_time_per_output_token_seconds",
        "itl",
        "Mean time per output token of each finished request, in seconds.",
    ),
    "e2e": ("vllm:e2e_request_latency_seconds", "req", "End-to-end request latency in seconds."),
    "queue": ("vllm:request_queue_time_seconds", "req", "Time spent in WAITING phase."),
    "prefill": ("vllm:request_prefill_time_seconds", "req", "Time spent in PREFILL phase."),
    "decode": ("vllm:request_decode_time_seconds", "req", "Time spent in DECODE phase."),
    "inference": ("vllm:request_inference_time_seconds", "req", "Time spent in RUNNING phase."),
    "req_prompt": ("vllm:request_prompt_tokens", "tok", "Prefill tokens of each request."),
    "req_gen": ("vllm:request_generation_tokens", "tok", "Generated tokens of each request."),
    "req_max": ("vllm:request_params_max_tokens", "tok", "The max_tokens request parameter."),
    "iteration": ("vllm:iteration_tokens_total", "iter", "Number of tokens per engine step."),
}
_GAUGES = {
    "running": ("vllm:num_requests_running", "Number of requests in model execution batches."),
    "waiting": ("vllm:num_requests_waiting", "Number of requests waiting to be processed."),
    "kv_usage": ("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage."),
}
_COUNTERS = {
    "prompt": ("vllm:prompt_tokens", "Number of prefill tokens processed."),
    "generation": ("vllm:generation_tokens", "Number of generation tokens processed."),
    "preemptions": ("vllm:num_preemptions", "Cumulative number of preemptions."),
    # Tokens looked up in, and found in, the prefix cache, for requests scheduled for the
    # first time (a preempted one counts apart in vLLM): `v1/metrics/stats.py`
    # `PrefixCacheStats.record`, exported by `v1/metrics/loggers.py`.
    "prefix_queries": ("vllm:prefix_cache_queries", "Prefix cache queries, in terms of tokens."),
    "prefix_hits": ("vllm:prefix_cache_hits", "Prefix cache hits, in terms of tokens."),
}


class VllmMetrics:
    """The engine observer that exports vLLM's series into an injected (per-server) registry.

    Also registers process, platform and GC collectors there, as vLLM's default registry has.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        model_name: str,
        engine: str = "0",
        *,
        max_model_len: int = 4096,
        started_at: float | None = None,
    ) -> None:
        register_process_collectors(registry, started_at)
        names, values = ("model_name", "engine"), (model_name, engine)
        buckets: dict[str, Sequence[float]] = {
            "ttft": TTFT_BUCKETS,
            "itl": ITL_BUCKETS,
            "req": REQUEST_LATENCY_BUCKETS,
            "tok": token_buckets(max_model_len),
            "iter": ITERATION_BUCKETS,
        }
        self._h = {
            key: Histogram(name, doc, names, registry=registry, buckets=buckets[family]).labels(
                *values
            )
            for key, (name, family, doc) in _HISTOGRAMS.items()
        }
        self._g = {
            key: Gauge(name, doc, names, registry=registry).labels(*values)
            for key, (name, doc) in _GAUGES.items()
        }
        self._c = {
            key: Counter(name, doc, names, registry=registry).labels(*values)
            for key, (name, doc) in _COUNTERS.items()
        }
        success = Counter(
            "vllm:request_success",
            "Count of finished requests, by finish reason (aborts included).",
            [*names, "finished_reason"],
            registry=registry,
        )
        # Children exist from the start, as in vLLM, so every reason is exported as 0.
        self._success = {reason: success.labels(*values, reason) for reason in FINISH_REASONS}

    def on_queued(self, seq: SimSequence) -> None:
        pass

    def on_admitted(self, seq: SimSequence, queue_time_s: float) -> None:
        # vLLM observes the queue time with the other phases, when the request finishes; the
        # prefix cache is counted when a request is first scheduled.
        if seq.cache_lookup:
            self._c["prefix_queries"].inc(seq.prompt_tokens)
            self._c["prefix_hits"].inc(seq.cached_tokens)

    def on_first_token(self, seq: SimSequence, ttft_s: float) -> None:
        self._h["ttft"].observe(ttft_s)
        self._c["prompt"].inc(seq.prompt_tokens)
        self._c["generation"].inc()

    def on_token(self, seq: SimSequence, gap_s: float) -> None:
        self._h["itl"].observe(gap_s)
        self._c["generation"].inc()

    def on_finished(self, seq: SimSequence, reason: FinishReason) -> None:
        """Every request the engine finished, aborts and errors included, with every phase
        histogram (`v1/metrics/stats.py::update_from_finished_request`, observed by
        `loggers.py`); TPOT is 0 for a single token. A client disconnect is not counted at
        all: `output_processor.py::abort_requests` records no finish statistics."""
        if seq.cancelled:
            return
        self._success[reason].inc()
        end = seq.finished if seq.finished is not None else seq.arrival
        # A phase the request never reached lasts until it ended (vLLM would subtract a 0.0
        # timestamp there; the simulator does not copy that artefact).
        admitted = seq.admitted if seq.admitted is not None else end
        first = seq.first_token if seq.first_token is not None else end
        last = seq.last_token if seq.last_token is not None else first
        decode_s = last - first
        self._h["e2e"].observe(end - seq.arrival)
        self._h["queue"].observe(admitted - seq.arrival)
        self._h["prefill"].observe(first - admitted)
        self._h["decode"].observe(decode_s)
        self._h["inference"].observe(last - admitted)
        self._h["tpot"].observe(decode_s / (seq.generated - 1) if seq.generated > 1 else 0.0)
        self._h["req_prompt"].observe(seq.prompt_tokens)
        self._h["req_gen"].observe(seq.generated)
        self._h["req_max"].observe(seq.max_tokens)

    def on_preempted(self, seq: SimSequence) -> None:
        self._c["preemptions"].inc()

    def on_step(self, scheduled_tokens: int) -> None:
        self._h["iteration"].observe(scheduled_tokens)

    def on_gauges(self, running: int, waiting: int, kv_usage: float) -> None:
        self._g["running"].set(running)
        self._g["waiting"].set(waiting)
        self._g["kv_usage"].set(kv_usage)
