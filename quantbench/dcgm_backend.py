"""GPU samples from a dcgm-exporter page: NVIDIA's exporter (`telemetry.dcgm_url`) or a
simulator's simulated one (`/dcgm/metrics`), read every interval while a target's stages run.

A `quantbench.gpu_sampler.GpuBackend`, so `GpuSampler` writes its samples to gpu.jsonl like
NVML's. Fetched with the direct-scrape client of the server metrics (analysis.server's
`HttpFetch`, injectable) and parsed by `loadtest.gpu_records.samples_from_dcgm`; a failed
scrape (the server restarting, a timeout) is counted and skipped, never the end of sampling.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

from analysis.server.scrape import Fetch, HttpFetch
from loadtest.gpu_records import GpuSample, samples_from_dcgm
from quantbench.gpu_sampler import NoGpu, closing_sample

__all__ = ["DcgmBackend"]


class DcgmBackend:
    """Scrapes `url` (a dcgm-exporter `/metrics` page) each interval; `errors` counts failed
    scrapes and `last_error` says why the latest failed."""

    name = "dcgm"

    def __init__(
        self, url: str, fetch: Fetch | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.url = url
        self._owned = HttpFetch(timeout_s=5.0) if fetch is None else None
        self._fetch: Fetch = fetch or self._owned  # type: ignore[assignment]
        self._clock = clock
        self.errors = 0
        self.last_error: str | None = None

    def read(self) -> list[GpuSample]:
        """One page, now: a sample per GPU. Raises on a failed fetch or a page that is not
        exposition text."""
        text, _ = self._fetch(self.url)
        return samples_from_dcgm(text, self._clock())

    def open(self) -> list[str]:
        try:
            samples = self.read()
        except Exception as exc:  # any failure: the URL is not a usable exporter
            raise NoGpu(f"dcgm: cannot read {self.url} ({type(exc).__name__}: {exc})") from exc
        if not samples:
            raise NoGpu(f"dcgm: {self.url} has no DCGM GPU series (is it dcgm-exporter?)")
        return [f"{s.gpu} {s.name} {s.uuid}".strip() for s in samples]

    def stream(self, interval_s: float, stop: threading.Event) -> Iterator[list[GpuSample]]:
        due = time.monotonic()
        while not stop.is_set():
            try:
                batch = self.read()
            except Exception as exc:  # a failed scrape is skipped: the target may be restarting
                self.errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                batch = []
            if batch:
                yield batch
            due += interval_s
            now = time.monotonic()
            if due < now:  # a slow scrape: skip the missed slots rather than bunch up
                due = now + interval_s
            if stop.wait(due - now):
                yield from closing_sample(self.read)
                return

    def close(self) -> None:
        if self._owned is not None:
            self._owned.close()
