"""TGI 3.3's Prometheus series, rendered by hand the way metrics-exporter-prometheus 0.15 does.

Names, labels, bucket bounds and help texts follow `router/src/server.rs` (exporter setup),
`router/src/infer`, `validation.rs` and `backends/v3/src/{backend,queue,lib}.rs`. The exporter
adds no `_total`, no `_created`, no unit suffix and no process or runtime series; a series
appears once first touched (STACKS.md 2.4).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from services.sim.engine import FinishReason, SimSequence
from services.sim.tgi_protocol import RequestTimings, rust_float

__all__ = [
    "BATCH_SIZE_BUCKETS",
    "DURATION_BUCKETS",
    "TgiMetrics",
    "token_buckets",
]


def _duration_buckets() -> tuple[float, ...]:
    # server.rs: `let mut value = 0.0001; for _ in 0..35 { value *= 1.5; push(value) }`, computed
    # the same way so the `le` labels match to the last digit (0.00015000000000000001, ...).
    out, value = [], 0.0001
    for _ in range(35):
        value *= 1.5
        out.append(value)
    return tuple(out)


def token_buckets(max_tokens: int) -> tuple[float, ...]:
    """`(max as f64 / 100.0) * (x + 1) as f64` for x in 0..100 (input length, token counts)."""
    return tuple((max_tokens / 100.0) * (x + 1) for x in range(100))


DURATION_BUCKETS = _duration_buckets()
BATCH_SIZE_BUCKETS = tuple(float(x + 1) for x in range(1024))

# `metrics::describe_*` calls of server.rs; the first description of a name wins. Series without
# one (tgi_request_failure, tgi_batch_inference_failure, tgi_batch_max_total_tokens, whose
# description is registered as `tgi_batch_total_tokens`) get no HELP line.
_HELP = {
    "tgi_request_success": "Number of successful requests",
    "tgi_request_duration": "Request duration",
    "tgi_request_validation_duration": "Request validation duration",
    "tgi_request_queue_duration": "Request queue duration",
    "tgi_request_inference_duration": "Request inference duration",
    "tgi_request_mean_time_per_token_duration": "Mean time per token per request",
    "tgi_request_generated_tokens": "Generated tokens per request",
    "tgi_batch_inference_count": "Inference calls per method (prefill or decode)",
    "tgi_request_count": "Total number of requests",
    "tgi_batch_inference_success": (
        "Number of successful inference calls per method (prefill or decode)"
    ),
    "tgi_batch_current_size": "Current batch size",
    "tgi_queue_size": "Current queue size",
    "tgi_batch_current_max_tokens": "Maximum tokens for the current batch",
    "tgi_request_max_new_tokens": "Maximum new tokens per request",
    "tgi_batch_inference_duration": "Batch inference duration",
    "tgi_batch_forward_duration": "Batch forward duration per method (prefill or decode)",
    "tgi_request_input_length": "Input token length per request",
    "tgi_batch_next_size": "Batch size of the next batch",
}

_Labels = tuple[tuple[str, str], ...]


@dataclass
class _Histogram:
    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)  # cumulative, as the exporter keeps them
    total: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        if not self.counts:
            self.counts = [0] * len(self.bounds)
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[i] += 1
        self.total += value
        self.count += 1


class _Registry:
    def __init__(self, buckets: dict[str, tuple[float, ...]]) -> None:
        self._buckets = buckets
        self._counters: dict[str, dict[_Labels, int]] = {}
        self._gauges: dict[str, dict[_Labels, float]] = {}
        self._histograms: dict[str, dict[_Labels, _Histogram]] = {}

    def inc(self, name: str, labels: _Labels = (), by: int = 1) -> None:
        series = self._counters.setdefault(name, {})
        series[labels] = series.get(labels, 0) + by

    def set(self, name: str, value: float, labels: _Labels = ()) -> None:
        self._gauges.setdefault(name, {})[labels] = value

    def observe(self, name: str, value: float, labels: _Labels = ()) -> None:
        bounds = self._buckets.get(name) or (DURATION_BUCKETS if name.endswith("duration") else ())
        assert bounds, f"{name} would be a summary; the simulator exports none"
        series = self._histograms.setdefault(name, {})
        series.setdefault(labels, _Histogram(bounds)).observe(value)

    def render(self) -> str:
        out: list[str] = []
        scalars: list[tuple[str, str, dict[_Labels, Any]]] = [
            *((name, "counter", series) for name, series in sorted(self._counters.items())),
            *((name, "gauge", series) for name, series in sorted(self._gauges.items())),
        ]
        for name, kind, series in scalars:
            _head(out, name, kind)
            out += [f"{name}{_labels(labels)} {_num(value)}\n" for labels, value in series.items()]
            out.append("\n")
        for name, hists in sorted(self._histograms.items()):
            _head(out, name, "histogram")
            for labels, hist in hists.items():
                counts = hist.counts or [0] * len(hist.bounds)
                bounds = map(rust_float, hist.bounds)
                for bound, n in (*zip(bounds, counts, strict=True), ("+Inf", hist.count)):
                    out.append(f"{name}_bucket{_labels((*labels, ('le', bound)))} {n}\n")
                out.append(f"{name}_sum{_labels(labels)} {rust_float(hist.total)}\n")
                out.append(f"{name}_count{_labels(labels)} {hist.count}\n")
            out.append("\n")
        return "".join(out)


def _head(out: list[str], name: str, kind: str) -> None:
    if name in _HELP:
        out.append(f"# HELP {name} {_HELP[name]}\n")
    out.append(f"# TYPE {name} {kind}\n")


def _labels(labels: _Labels) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in labels) + "}" if labels else ""


def _num(value: float) -> str:
    return str(value) if isinstance(value, int) else rust_float(value)


class TgiMetrics:
    """TGI's `/metrics` page: request series fed by the app, batch series by engine hooks.

    Implements the engine's `EngineObserver`. The shared engine mixes prefill chunks and decode
    in one step; a step that completes a prefill counts as one `prefill` forward call and one
    that advances decoding sequences as one `decode` call (TGI runs them as separate calls).
    """

    def __init__(self, *, max_input_tokens: int, max_total_tokens: int) -> None:
        self._r = _Registry(
            {
                "tgi_request_input_length": token_buckets(max_input_tokens),
                "tgi_request_generated_tokens": token_buckets(max_total_tokens),
                "tgi_request_max_new_tokens": token_buckets(max_total_tokens),
                "tgi_batch_next_size": BATCH_SIZE_BUCKETS,
            }
        )
        self._batch_tokens: dict[SimSequence, int] = {}
        self._admitted = 0
        self._prefill_s: list[float] = []
        self._decode_s: list[float] = []

    def render(self) -> str:
        """The exposition text, in the exporter's layout: counters, gauges, then histograms."""
        return self._r.render()

    # Router (HTTP layer) events -------------------------------------------------------------
    def set_max_batch_total_tokens(self, tokens: int) -> None:
        """Set once after warmup by `backends/v3/src/lib.rs` (the KV token budget)."""
        self._r.set("tgi_batch_max_total_tokens", float(tokens))

    def request_received(self) -> None:
        self._r.inc("tgi_request_count")

    def request_failed(self, err: str) -> None:
        self._r.inc("tgi_request_failure", (("err", err),))

    def request_validated(self, input_length: int, max_new_tokens: int) -> None:
        self._r.observe("tgi_request_input_length", float(input_length))
        self._r.observe("tgi_request_max_new_tokens", float(max_new_tokens))

    def request_succeeded(self, t: RequestTimings) -> None:
        """What `generate_internal`/`generate_stream_internal` record at the end event."""
        self._r.inc("tgi_request_success")
        self._r.observe("tgi_request_duration", t.total_s)
        self._r.observe("tgi_request_validation_duration", t.validation_s)
        self._r.observe("tgi_request_queue_duration", t.queue_s)
        self._r.observe("tgi_request_inference_duration", t.inference_s)
        self._r.observe("tgi_request_mean_time_per_token_duration", t.time_per_token_s)
        self._r.observe("tgi_request_generated_tokens", float(t.generated_tokens))

    # EngineObserver hooks ---------------------------------------------------------------------
    def on_queued(self, seq: SimSequence) -> None:
        pass

    def on_admitted(self, seq: SimSequence, queue_time_s: float) -> None:
        # queue.rs: a batch reserves input + max_new tokens per entry (`batch.max_tokens`).
        self._batch_tokens[seq] = seq.prompt_tokens + seq.max_tokens
        self._admitted += 1

    def on_first_token(self, seq: SimSequence, ttft_s: float) -> None:
        assert seq.admitted is not None and seq.first_token is not None
        self._prefill_s.append(seq.first_token - seq.admitted)

    def on_token(self, seq: SimSequence, gap_s: float) -> None:
        self._decode_s.append(gap_s)

    def on_finished(self, seq: SimSequence, reason: FinishReason) -> None:
        self._batch_tokens.pop(seq, None)
        if seq.cancelled:
            # backend.rs/queue.rs: the client's channel is closed when the next token is sent.
            self.request_failed("dropped")

    def on_preempted(self, seq: SimSequence) -> None:
        pass  # TGI reserves KV at admission and never preempts

    def on_step(self, scheduled_tokens: int) -> None:
        self._flush()

    def on_gauges(self, running: int, waiting: int, kv_usage: float) -> None:
        self._flush()  # FixedEngine reports its step before emitting; gauges come after
        self._r.set("tgi_batch_current_size", float(running))
        self._r.set("tgi_batch_current_max_tokens", float(sum(self._batch_tokens.values())))
        self._r.set("tgi_queue_size", float(waiting))

    def _flush(self) -> None:
        """Close the current engine step: one new batch, one call per method that ran."""
        if self._admitted:
            self._r.observe("tgi_batch_next_size", float(self._admitted))
        for method, durations in (("prefill", self._prefill_s), ("decode", self._decode_s)):
            if durations:
                labels = (("method", method),)
                self._r.inc("tgi_batch_inference_count", labels)
                self._r.observe("tgi_batch_forward_duration", max(durations), labels)
                self._r.observe("tgi_batch_inference_duration", max(durations), labels)
                self._r.inc("tgi_batch_inference_success", labels)
        self._admitted = 0
        self._prefill_s, self._decode_s = [], []
