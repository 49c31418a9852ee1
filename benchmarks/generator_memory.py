"""Memory of one generator process per request in flight (the figure `loadtest.limits` uses).

A fixed-timing simulator holds every request for a minute before its first token; Locust
(one process, plain `locust -f loadtest/locustfile.py`) sends a small and a large number of
them, in closed loop (users) and in open loop (one burst of arrivals), and its resident
memory is read once they are all in flight. The slope between the two loads is the memory
one more request in flight costs; the small load's figure is the process's own.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from tests.procs import REPO_ROOT, start_sim, stop_sim

__all__ = ["MemoryResult", "measure_generator_memory"]

_HOLD_MS = 60_000  # time to first token: long enough for every request to stay in flight
_DEADLINE_S = 60.0


@dataclass(frozen=True)
class MemoryResult:
    mode: str
    small: int
    large: int
    process_mb: float  # resident memory with `small` requests in flight
    per_request_kib: float  # slope: each further request in flight


def _in_flight_rss(url: str, mode: str, count: int, run_dir: Path) -> int:
    """Resident bytes of the Locust process once `count` requests are all in flight."""
    load = ["--qb-stages", str(count)]
    if mode == "rate":  # one second of evenly spaced arrivals
        load += ["--qb-mode", "rate", "--qb-arrival", "constant"]
    process = subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", "loadtest/locustfile.py", "--headless",
         "--host", url, *load, "--qb-warmup", "0s", "--qb-stage-duration", "1s",
         "--qb-run-dir", str(run_dir), "--qb-output-tokens", "4", "--qb-allow-overload",
         "--only-summary", "--loglevel", "ERROR"],
        cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        journal = run_dir / "scheduled.jsonl"
        deadline = time.monotonic() + _DEADLINE_S
        sent = 0
        while sent < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {sent} of {count} requests were sent")
            time.sleep(0.1)
            sent = len(journal.read_bytes().splitlines()) if journal.exists() else 0
        time.sleep(1.0)  # the last requests' buffers are allocated
        return int(psutil.Process(process.pid).memory_info().rss)
    finally:
        process.kill()
        process.wait()


def measure_generator_memory(small: int = 16, large: int = 512) -> list[MemoryResult]:
    proc, url = start_sim(
        "--timing", "fixed", "--ttft-ms", str(_HOLD_MS), "--itl-ms", "10", "--port", "0"
    )
    results = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for mode in ("concurrency", "rate"):
                low = _in_flight_rss(url, mode, small, Path(tmp) / f"{mode}-{small}")
                high = _in_flight_rss(url, mode, large, Path(tmp) / f"{mode}-{large}")
                slope = (high - low) / (large - small) / 1024
                results.append(MemoryResult(mode, small, large, low / 1e6, slope))
    finally:
        stop_sim(proc)
    return results
