"""What the load generator itself does: its CPU use (for stage validity) and a Prometheus
exporter of client-side latencies and outcomes (so Grafana shows client beside server).

Locust's own CPU warning samples every 10 s from a zero baseline (TRAPS.md 2), so each
generator process samples itself once a second into `generator.jsonl`.

The exporter binds 127.0.0.1 unless `QUANTBENCH_EXPORTER_BIND` asks otherwise (compose sets it
so that Prometheus can reach each Locust worker container).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path

import psutil
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from loadtest.records import RequestRecord

__all__ = ["EXPORTER_BIND_ENV", "GENERATOR_FILE", "ClientExporter", "CpuSampler", "bind_address"]

GENERATOR_FILE = "generator.jsonl"
EXPORTER_BIND_ENV = "QUANTBENCH_EXPORTER_BIND"

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

    def serve(self, port: int, host: str | None = None) -> int:
        """Serve `/metrics` in a thread; returns the port bound (`bind_address` says where)."""
        host, port = bind_address(port, host)
        server, _ = start_http_server(port, addr=host, registry=self.registry)
        return int(server.server_port)


def bind_address(
    port: int, host: str | None = None, environ: Mapping[str, str] = os.environ
) -> tuple[str, int]:
    """Where the exporter listens: `host` (default 127.0.0.1) and `port`, unless
    `QUANTBENCH_EXPORTER_BIND` ("HOST" or "HOST:PORT", e.g. "0.0.0.0:9646") names them.

    A port in it replaces the caller's, which Locust offsets by the worker index to keep the
    processes of one host apart: containers each have their own network namespace, so every
    replica serves the same port and Prometheus finds them all through Docker's DNS."""
    value = environ.get(EXPORTER_BIND_ENV, "").strip()
    if not value:
        return host or "127.0.0.1", port
    bind_host, colon, bind_port = value.rpartition(":")
    if not colon or "]" in bind_port:  # "HOST" alone (an IPv6 literal in brackets included)
        bind_host, bind_port = value, ""
    if bind_port and not bind_port.isdigit():
        raise ValueError(f"{EXPORTER_BIND_ENV}={value!r}: expected HOST or HOST:PORT")
    return bind_host.strip("[]") or host or "127.0.0.1", int(bind_port) if bind_port else port
