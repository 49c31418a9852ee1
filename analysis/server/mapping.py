"""Which exposed series of each serving stack stand for which common measure: one registry by
stack name, so vLLM, TGI and our ExLlamaV2 server compare on the same footing (older vLLM names
are fallbacks)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "COUNTER_MEASURES",
    "GAUGE_MEASURES",
    "HISTOGRAM_MEASURES",
    "MEASURES",
    "PROCESS_START",
    "STACK_MAPPINGS",
    "Measure",
    "ResolvedSeries",
    "SeriesSpec",
    "UnknownStackError",
    "mapping_for",
    "resolve",
    "sample_filter",
    "sample_names",
]

Kind = Literal["counter", "gauge", "histogram"]
Aggregate = Literal["sum", "avg", "max"]


@dataclass(frozen=True)
class Measure:
    """A common measure. `aggregate` combines several series (e.g. data-parallel engines)."""

    key: str
    kind: Kind
    aggregate: Aggregate = "sum"


HISTOGRAM_MEASURES = (
    "ttft_s",
    "itl_s",
    "tpot_s",  # per request: (last token - first token) / (tokens - 1), the client's TPOT
    # per request: time from batch start (prefill included) / generated tokens: TGI's
    # `tgi_request_mean_time_per_token_duration`, NOT a TPOT (router/src/server.rs)
    "inference_per_token_s",
    "e2e_s",
    "queue_time_s",
    "prefill_time_s",
    "decode_time_s",
    "inference_time_s",
)
COUNTER_MEASURES = (
    "requests_finished_total",
    "prompt_tokens_total",
    "generation_tokens_total",
    "preemptions_total",  # KV cache ran out: a running request was evicted and recomputed
    # prompt tokens looked up in the prefix cache, and found there (vLLM, in tokens)
    "prefix_cache_queries_total",
    "prefix_cache_hits_total",
)
GAUGE_MEASURES = ("running", "waiting", "kv_cache_usage")
PROCESS_START = "process_start_time_s"

MEASURES: dict[str, Measure] = {
    **{key: Measure(key, "histogram") for key in HISTOGRAM_MEASURES},
    **{key: Measure(key, "counter") for key in COUNTER_MEASURES},
    "running": Measure("running", "gauge", "sum"),
    "waiting": Measure("waiting", "gauge", "sum"),
    "kv_cache_usage": Measure("kv_cache_usage", "gauge", "avg"),
    PROCESS_START: Measure(PROCESS_START, "gauge", "max"),
}


@dataclass(frozen=True)
class SeriesSpec:
    """Candidate exposed names, preferred first; histograms by base name (no `_bucket`).

    `exclude` leaves out series whose label has one of the listed values.
    """

    names: tuple[str, ...]
    exclude: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True)
class ResolvedSeries:
    """The one name a target actually exposes for a measure."""

    measure: Measure
    name: str
    exclude: tuple[tuple[str, tuple[str, ...]], ...] = ()


class UnknownStackError(ValueError):
    """A stack name with no entry in the registry."""


# vLLM's `request_success` counts every finished request, aborts and errors included (STACKS
# 1.4): leaving those out makes it comparable with the client's `ok` count.
_NOT_OK = (("finished_reason", ("abort", "error")),)


def _vllm_like(prefix: str, *, old_names: bool) -> dict[str, SeriesSpec]:
    """vLLM 0.33's core set under `prefix`; pre-0.11/0.9 vLLM names as fallbacks if asked."""
    p = prefix
    itl: tuple[str, ...] = (f"{p}inter_token_latency_seconds",)
    kv: tuple[str, ...] = (f"{p}kv_cache_usage_perc",)
    queries: tuple[str, ...] = (f"{p}prefix_cache_queries_total",)
    hits: tuple[str, ...] = (f"{p}prefix_cache_hits_total",)
    if old_names:
        itl += (f"{p}time_per_output_token_seconds",)  # renamed in 0.11
        kv += (f"{p}gpu_cache_usage_perc",)  # renamed in 0.9
        queries += (f"{p}gpu_prefix_cache_queries_total",)  # renamed in 0.9
        hits += (f"{p}gpu_prefix_cache_hits_total",)
    return {
        "ttft_s": SeriesSpec((f"{p}time_to_first_token_seconds",)),
        "itl_s": SeriesSpec(itl),
        "tpot_s": SeriesSpec((f"{p}request_time_per_output_token_seconds",)),
        "e2e_s": SeriesSpec((f"{p}e2e_request_latency_seconds",)),
        "queue_time_s": SeriesSpec((f"{p}request_queue_time_seconds",)),
        "prefill_time_s": SeriesSpec((f"{p}request_prefill_time_seconds",)),
        "decode_time_s": SeriesSpec((f"{p}request_decode_time_seconds",)),
        "inference_time_s": SeriesSpec((f"{p}request_inference_time_seconds",)),
        "requests_finished_total": SeriesSpec((f"{p}request_success_total",), _NOT_OK),
        "prompt_tokens_total": SeriesSpec((f"{p}prompt_tokens_total",)),
        "generation_tokens_total": SeriesSpec((f"{p}generation_tokens_total",)),
        "preemptions_total": SeriesSpec((f"{p}num_preemptions_total",)),
        "prefix_cache_queries_total": SeriesSpec(queries),
        "prefix_cache_hits_total": SeriesSpec(hits),
        "running": SeriesSpec((f"{p}num_requests_running",)),
        "waiting": SeriesSpec((f"{p}num_requests_waiting",)),
        "kv_cache_usage": SeriesSpec(kv),
        PROCESS_START: SeriesSpec(("process_start_time_seconds",)),
    }


# TGI (STACKS 2.4): no TTFT, ITL, prefill or KV-usage series and no process series. Its "mean
# time per token" divides the inference time, which starts with the batch and so includes the
# prefill, by all n generated tokens (router/src/server.rs, generate_stream_internal): for short
# outputs it is far above a TPOT, so it is its own measure, never put beside the client's TPOT.
# Token totals come from the `_sum` of the per-request token histograms (input length at
# validation, generated tokens at success), which grow like counters. Its counters have no
# `_total`: Prometheus stores them as exposed, while prometheus_client's parser (the direct
# path) names every counter sample `x_total`, so both spellings are candidates.
_TGI = {
    "inference_per_token_s": SeriesSpec(("tgi_request_mean_time_per_token_duration",)),
    "e2e_s": SeriesSpec(("tgi_request_duration",)),
    "queue_time_s": SeriesSpec(("tgi_request_queue_duration",)),
    "inference_time_s": SeriesSpec(("tgi_request_inference_duration",)),
    "requests_finished_total": SeriesSpec(("tgi_request_success", "tgi_request_success_total")),
    "prompt_tokens_total": SeriesSpec(("tgi_request_input_length_sum",)),
    "generation_tokens_total": SeriesSpec(("tgi_request_generated_tokens_sum",)),
    "running": SeriesSpec(("tgi_batch_current_size",)),
    "waiting": SeriesSpec(("tgi_queue_size",)),
}

STACK_MAPPINGS: dict[str, dict[str, SeriesSpec]] = {
    "vllm": _vllm_like("vllm:", old_names=True),
    "tgi": _TGI,
    "exllamav2": _vllm_like("exllamav2:", old_names=False),
    "other": {},
}


def mapping_for(stack: str) -> dict[str, SeriesSpec]:
    """The measure → series table of `stack`; an unknown name lists the known ones."""
    try:
        return STACK_MAPPINGS[stack]
    except KeyError:
        known = ", ".join(sorted(STACK_MAPPINGS))
        raise UnknownStackError(f"unknown stack {stack!r}; known stacks: {known}") from None


def _exposed(measure: Measure, name: str) -> tuple[str, ...]:
    if measure.kind == "histogram":
        return (f"{name}_bucket", f"{name}_sum", f"{name}_count")
    return (name,)


def resolve(
    mapping: Mapping[str, SeriesSpec], available: Collection[str]
) -> dict[str, ResolvedSeries]:
    """For each measure, the first candidate whose exposed samples are in `available`."""
    found = set(available)
    out: dict[str, ResolvedSeries] = {}
    for key, spec in mapping.items():
        measure = MEASURES[key]
        for name in spec.names:
            if _exposed(measure, name)[-1] in found:
                out[key] = ResolvedSeries(measure, name, spec.exclude)
                break
    return out


def sample_names(mapping: Mapping[str, SeriesSpec]) -> set[str]:
    """Every exposed sample name any candidate of `mapping` could use."""
    return {
        exposed
        for key, spec in mapping.items()
        for name in spec.names
        for exposed in _exposed(MEASURES[key], name)
    }


def sample_filter(stack: str) -> Callable[[str], bool] | None:
    """A sample-name filter for `MetricsRecorder(keep=...)`: only what `stack`'s measures use.

    None (keep everything) for `other`, whose series nothing maps.
    """
    names = sample_names(mapping_for(stack))
    return names.__contains__ if names else None
