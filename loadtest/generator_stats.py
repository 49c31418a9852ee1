"""What the load generator itself does: its CPU use (for stage validity) and a Prometheus
exporter of client-side latencies and outcomes (so Grafana shows client beside server).

Locust's own CPU warning samples every 10 s from a zero baseline (TRAPS.md 2), so each
generator process samples itself once a second into `generator.jsonl`.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import psutil
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from loadtest.records import RequestRecord

__all__ = ["GENERATOR_FILE", "ClientExporter", "CpuSampler"]

GENERATOR_FILE = "generator.jsonl"

# The same bounds as vLLM's TTFT and ITL histograms, so client and server panels line up.
_TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5,
                 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)  # fmt: skip
_ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0,
                7.5, 10.0, 20.0, 40.0, 80.0)  # fmt: skip
_E2E_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0,
                60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)  # fmt: skip


class CpuSampler:
    """Appends `{"pid", "wall_s", "cpu_percent"}` lines; call `sample()` about once a second."""

    def __init__(self, run_dir: Path) -> None:
        self._path = run_dir / GENERATOR_FILE
        self._process = psutil.Process()
        self._process.cpu_percent()  # the first reading is a baseline, not a sample

    def sample(self) -> None:
        line = {
            "pid": os.getpid(),
            "wall_s": time.time(),
            "cpu_percent": self._process.cpu_percent(),
        }
        with self._path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(line) + "\n")


class ClientExporter:
    """Client-side histograms and outcome counters for one generator process."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        labels = ("target",)
        self._ttft = Histogram(
            "quantbench_client_ttft_seconds",
            "Client-measured time to first token",
            labels,
            registry=self.registry,
            buckets=_TTFT_BUCKETS,
        )
        self._tpot = Histogram("quantbench_client_tpot_seconds", "Client-measured time per "
                               "output token (per request)", labels, registry=self.registry,
                               buckets=_ITL_BUCKETS)  # fmt: skip
        self._e2e = Histogram(
            "quantbench_client_e2e_seconds",
            "Client-measured end-to-end latency",
            labels,
            registry=self.registry,
            buckets=_E2E_BUCKETS,
        )
        self._outcomes = Counter(
            "quantbench_client_requests",
            "Requests by outcome",
            ("target", "outcome"),
            registry=self.registry,
        )
        self._tokens = Counter("quantbench_client_output_tokens", "Output tokens received",
                               labels, registry=self.registry)  # fmt: skip

    def observe(self, record: RequestRecord) -> None:
        self._outcomes.labels(record.target, record.outcome.value).inc()
        if record.ttft_ms is not None:
            self._ttft.labels(record.target).observe(record.ttft_ms / 1000)
        if record.e2e_ms is not None:
            self._e2e.labels(record.target).observe(record.e2e_ms / 1000)
        if record.tpot_ms is not None:
            # Per request, not per token: one observation per gap would cost ~1 µs a token
            # on the generator's only core, right when a stream ends.
            self._tpot.labels(record.target).observe(record.tpot_ms / 1000)
        self._tokens.labels(record.target).inc(record.output_tokens)

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        start_http_server(port, addr=host, registry=self.registry)
