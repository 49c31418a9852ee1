"""What the load generator itself does: its CPU use and event-loop lag (for stage validity)
and a Prometheus exporter of client-side latencies and outcomes (so Grafana shows client
beside server).

Locust's own CPU warning samples every 10 s from a zero baseline (TRAPS.md 2), so each
generator process samples itself once a second into `generator.jsonl`. CPU is an indirect
sign; the direct one is how late the process's event loop wakes a timer (`LoopLagProbe`):
while the loop is busy, every greenlet waits, and so does every timestamp taken in user space
and every scheduled send. A process can be late at 70% CPU (bursts) or on time at 95%.

The exporter binds 127.0.0.1 unless `QUANTBENCH_EXPORTER_BIND` asks otherwise (compose sets it
so that Prometheus can reach each Locust worker container).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import psutil
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from loadtest.records import RequestRecord

__all__ = [
    "EXPORTER_BIND_ENV",
    "GENERATOR_FILE",
    "LOOP_LATE_MS",
    "ClientExporter",
    "CpuSampler",
    "LoopLagProbe",
    "bind_address",
]

GENERATOR_FILE = "generator.jsonl"
LOOP_LATE_MS = 1.0
"""A timer woken later than this is kept, lateness and all; earlier ones are only counted (so
a healthy process writes a count, and a lagging one every late wake-up, which is what a p99
over a stage's window needs)."""
EXPORTER_BIND_ENV = "QUANTBENCH_EXPORTER_BIND"

# The same bounds as vLLM's TTFT and ITL histograms, so client and server panels line up.
_TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5,
                 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)  # fmt: skip
_ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0,
                7.5, 10.0, 20.0, 40.0, 80.0)  # fmt: skip
_E2E_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0,
                60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)  # fmt: skip


class LoopLagProbe:
    """How late the event loop wakes a timer that asks to sleep `interval_s`, tick by tick,
    and how much of each late tick this process spent on the CPU.

    A tick that is late while the process was busy the whole time is the generator's own
    saturation (its loop held by its own work); one that is late while the process sat idle
    is the host not scheduling it (other processes on its cores). `run(sleep)` loops forever
    in its own greenlet (`sleep` is `gevent.sleep`); `take()` returns what was seen since the
    last call: `loop_ticks`, and for every tick later than `LOOP_LATE_MS` its lateness
    (`loop_late_ms`) and the process's CPU share over it (`loop_busy`, 0–1, same order).
    """

    def __init__(
        self,
        interval_s: float = 0.01,
        clock: Callable[[], float] = time.perf_counter,
        cpu_clock: Callable[[], float] = time.process_time,
    ) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._cpu_clock = cpu_clock
        self._ticks = 0
        self._late_ms: list[float] = []
        self._busy: list[float] = []

    def woke(self, due_s: float, now_s: float, busy: float = 1.0) -> None:
        """One tick: the timer was due at `due_s` and ran at `now_s` (same clock); the process
        was on the CPU for `busy` of the tick."""
        self._ticks += 1
        late_ms = (now_s - due_s) * 1000.0
        if late_ms > LOOP_LATE_MS:
            self._late_ms.append(round(late_ms, 3))
            self._busy.append(round(min(max(busy, 0.0), 1.0), 3))

    def run(self, sleep: Callable[[float], object]) -> None:
        while True:
            start_s, cpu_s = self._clock(), self._cpu_clock()
            due_s = start_s + self.interval_s
            sleep(self.interval_s)
            now_s = self._clock()
            used_s = self._cpu_clock() - cpu_s
            self.woke(due_s, now_s, used_s / (now_s - start_s) if now_s > start_s else 1.0)

    def take(self) -> dict[str, object]:
        seen = {"loop_ticks": self._ticks, "loop_late_ms": self._late_ms, "loop_busy": self._busy}
        self._ticks, self._late_ms, self._busy = 0, [], []
        return seen


class CpuSampler:
    """Appends `{"pid", "wall_s", "cpu_percent"}` lines, with `loop_ticks`, `loop_late_ms` and
    `loop_busy` when given a `LoopLagProbe`; call `sample()` about once a second."""

    def __init__(self, run_dir: Path, lag: LoopLagProbe | None = None) -> None:
        self._path = run_dir / GENERATOR_FILE
        self._process = psutil.Process()
        self._process.cpu_percent()  # the first reading is a baseline, not a sample
        self._lag = lag

    def sample(self) -> None:
        line = {
            "pid": os.getpid(),
            "wall_s": time.time(),
            "cpu_percent": self._process.cpu_percent(),
            **(self._lag.take() if self._lag is not None else {}),
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
