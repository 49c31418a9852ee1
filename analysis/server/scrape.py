"""Direct scrapes of a target's `/metrics` during a run, into `server_metrics.jsonl`, so server
figures exist without a Prometheus server; a failed scrape is a record, never an exception.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import httpx

from analysis.server.samples import (
    SERVER_METRICS_FILE,
    error_record,
    ok_record,
    parse_exposition,
)

__all__ = ["Fetch", "HttpFetch", "MetricsRecorder"]

Fetch = Callable[[str], tuple[str, str]]
"""GET a URL; return (body text, content type); raise on any failure."""

# Ask for the classic text format, which every exporter here speaks.
_ACCEPT = "text/plain;version=0.0.4;q=1,*/*;q=0.1"


class HttpFetch:
    """The default fetch: one pooled httpx client; a non-2xx answer raises."""

    def __init__(
        self,
        timeout_s: float = 5.0,
        transport: httpx.BaseTransport | None = None,
        headers: dict[str, str] | None = None,
    ):
        # `headers`: the target's Authorization when it has an API key (a server that guards
        # /metrics too answers; one that does not ignores it).
        self._client = httpx.Client(
            timeout=timeout_s, headers={"Accept": _ACCEPT, **(headers or {})}, transport=transport
        )

    def __call__(self, url: str) -> tuple[str, str]:
        response = self._client.get(url)
        response.raise_for_status()
        return response.text, response.headers.get("content-type", "")

    def close(self) -> None:
        self._client.close()


class MetricsRecorder:
    """Scrapes `metrics_url` every `interval_s` on a background thread until stopped.

    Use as `with MetricsRecorder(run_dir, "vllm-awq", url): ...`, or `start()`/`stop()`.
    The first scrape happens at `start()`, one more at `stop()` so the last stage's end is
    covered. Each record is one `os.write` to an O_APPEND file, so recorders of several
    targets can share the file. `keep` filters sample names (see `mapping.sample_filter`);
    `fetch` and `clock` (wall time, stamped when the scrape starts) are injectable.
    """

    def __init__(
        self,
        run_dir: Path,
        target: str,
        metrics_url: str,
        interval_s: float = 1.0,
        *,
        fetch: Fetch | None = None,
        clock: Callable[[], float] = time.time,
        keep: Callable[[str], bool] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, not {interval_s}")
        self.path = Path(run_dir) / SERVER_METRICS_FILE
        self.target = target
        self.url = metrics_url
        self.interval_s = interval_s
        self._owned: HttpFetch | None = None
        if fetch is None:  # ours, so closed at stop(): a recorder runs once
            timeout_s = max(0.5, min(interval_s, 5.0))
            fetch = self._owned = HttpFetch(timeout_s=timeout_s, headers=headers)
        self._fetch = fetch
        self._clock = clock
        self._keep = keep
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._fd: int | None = None
        self._lock = threading.Lock()
        self.scrapes = 0
        self.errors = 0
        self.last_ok_s: float | None = None  # wall time of the latest successful scrape
        self._failure: OSError | None = None

    def scrape_once(self) -> bool:
        """Scrape now and append the record; True if the scrape succeeded."""
        wall_s, started = self._clock(), time.perf_counter()
        try:
            text, content_type = self._fetch(self.url)
            # Stamp the scrape when the answer came: the server read its counters just
            # before sending it, which on a busy host can be many ms after we asked.
            wall_s = self._clock()
            samples = parse_exposition(text, content_type, self._keep)
        except Exception as exc:  # any failure is data: the server may be down or restarting
            message = f"{type(exc).__name__}: {exc}".strip()
            line = error_record(self.target, wall_s, time.perf_counter() - started, message)
            ok = False
        else:
            line = ok_record(self.target, wall_s, time.perf_counter() - started, samples)
            ok = True
        with self._lock:
            self._write(line.encode())
            self.scrapes += 1
            self.errors += not ok
            if ok:
                self.last_ok_s = wall_s
        return ok

    def _write(self, data: bytes) -> None:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        while data:
            data = data[os.write(self._fd, data) :]

    def _run(self) -> None:
        due = time.monotonic()
        while not self._stop.is_set():
            try:
                self.scrape_once()
            except OSError as exc:  # the run directory cannot be written: stop() re-raises
                self._failure = exc
                return
            due += self.interval_s
            now = time.monotonic()
            if due < now:  # a slow scrape: skip the missed slots rather than bunch up
                due = now + self.interval_s
            if self._stop.wait(due - now):
                return

    def start(self) -> MetricsRecorder:
        if self._thread is not None:
            raise RuntimeError("recorder already started")
        self._thread = threading.Thread(
            target=self._run, name=f"metrics-{self.target}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread, take a last scrape and close the file (idempotent).

        Raises the OSError that stopped the thread early if the file could not be written.
        """
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        try:
            if self._failure is None:
                self.scrape_once()
        finally:
            with self._lock:
                if self._fd is not None:
                    os.close(self._fd)
                    self._fd = None
            if self._owned is not None:
                self._owned.close()
        if self._failure is not None:
            raise self._failure

    def __enter__(self) -> MetricsRecorder:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
