"""Client accuracy under load: TTFT and ITL as the client saw them vs the server's own stamps.

One fixed-timing simulator (on its own core) logs when it actually wrote each token (due
time + lateness); quantbench's Locust generator and a plain asyncio + aiohttp client (each on
the other core, one at a time) drive it with N closed-loop streams, and every request is
matched to the server's log by its X-Request-Id. The error is client time − server write
time: what the client adds. Both send quantbench's own request (vLLM per-chunk usage), so the
chunks are vLLM 0.33's, null fields and usage included, and the server does the same work.
Beside each client's figures: the simulator's own lateness and CPU in that run, so a late
server is never read as an inaccurate client.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from benchmarks.cores import CLIENT_CORE, SERVER_CORE, ProcessCpu, on_core, pinned
from loadtest.generator_stats import GENERATOR_FILE
from tests.procs import REPO_ROOT, start_sim, stop_sim

__all__ = ["QUANTBENCH", "REFERENCE", "AccuracyResult", "Load", "measure_accuracy", "measure_one"]

QUANTBENCH = "quantbench"
REFERENCE = "aiohttp"
_RAMP_S = 2.0  # streams start spread over this, as Locust's users ramp up


@dataclass(frozen=True)
class Load:
    """N closed-loop streams of `tokens` tokens every `itl_ms`; the server writes `burst`
    tokens (one event each) at a time, every burst × itl_ms."""

    streams: int
    tokens: int = 128
    itl_ms: float = 10.0
    burst: int = 1
    seconds: float = 8.0

    @property
    def events_per_s(self) -> float:
        return self.streams * 1000.0 / self.itl_ms


@dataclass(frozen=True)
class AccuracyResult:
    client: str
    processes: int
    requests: int
    events_per_s: float  # token events the server wrote per second while the streams ran
    ttft_err_p50_ms: float
    ttft_err_p95_ms: float
    itl_err_p95_ms: float
    client_cpu_percent: float  # per process
    server_late_p50_ms: float  # the simulator's own lateness against its due times
    server_late_p99_ms: float
    server_cpu_percent: float


@dataclass
class _ServerLog:
    writes: dict[str, list[float]]  # request id -> wall time each token was written
    lateness_ms: list[float]

    def steady_rate(self) -> float:
        """Tokens written per second while every stream ran: the median of the one-second
        bins at least half as full as the fullest (not the ramp, not the drain)."""
        times = np.concatenate([np.asarray(w) for w in self.writes.values()] or [np.zeros(0)])
        if times.size == 0:
            return float("nan")
        counts = np.bincount((times - times.min()).astype(int))
        return float(np.median(counts[counts >= counts.max() / 2]))


def _server_log(path: Path, itl_s: float, burst: int) -> _ServerLog:
    writes: dict[str, list[float]] = {}
    lateness: list[float] = []
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        late = entry["lateness_ms"]
        lateness.extend(late)
        if entry["request_id"] and entry["first_token"] is not None:
            first = entry["first_token"]
            # token k is due at first + (k // burst) * burst * itl; written `late` after that
            writes[entry["request_id"]] = [
                first + (k // burst) * burst * itl_s + ms / 1000 for k, ms in enumerate(late)
            ]
    return _ServerLog(writes, lateness)


def _errors(
    client: dict[str, list[float]], server: dict[str, list[float]]
) -> tuple[int, float, float, float]:
    """Requests matched, TTFT error p50/p95 and |ITL error| p95 (ms), the ITL error taken over
    the gaps between server writes (inside a burst both sides see no gap)."""
    ttft: list[float] = []
    itl: list[np.ndarray] = []
    for request_id, seen in client.items():
        wrote = server.get(request_id)
        if not wrote or len(wrote) != len(seen):
            continue
        ttft.append((seen[0] - wrote[0]) * 1000)
        gaps = np.diff(wrote)
        between = gaps > 0
        itl.append((np.diff(seen)[between] - gaps[between]) * 1000)
    if not ttft:
        return 0, float("nan"), float("nan"), float("nan")
    pooled = np.abs(np.concatenate(itl))
    return (
        len(ttft),
        float(np.percentile(ttft, 50)),
        float(np.percentile(ttft, 95)),
        float(np.percentile(pooled, 95)) if pooled.size else float("nan"),
    )


def request_body(tokens: int) -> dict[str, Any]:
    """What quantbench sends a vLLM target (loadtest/clients/openai.py), model left to the
    server."""
    return {
        "model": None, "prompt": "hello there", "max_tokens": tokens, "min_tokens": tokens,
        "ignore_eos": True, "stream": True, "temperature": 0.0,
        "stream_options": {"include_usage": True, "continuous_usage_stats": True},
    }  # fmt: skip


async def _aiohttp_stream(
    session: aiohttp.ClientSession,
    url: str,
    tokens: int,
    until: float,
    seen: dict[str, list[float]],
    offset_s: float,
) -> None:
    body = request_body(tokens)
    await asyncio.sleep(offset_s)
    while time.monotonic() < until:
        request_id = uuid.uuid4().hex
        stamps: list[float] = []
        async with session.post(
            f"{url}/v1/completions", json=body, headers={"X-Request-Id": request_id}
        ) as resp:
            while line := await resp.content.readline():
                # a token event: not the blank line, [DONE] or the usage chunk (choices: [])
                if line.startswith(b"data: {") and b'"choices":[]' not in line:
                    stamps.append(time.time())
        seen[request_id] = stamps


async def _aiohttp_client(url: str, load: Load) -> dict[str, list[float]]:
    seen: dict[str, list[float]] = {}
    until = time.monotonic() + _RAMP_S + load.seconds
    connector = aiohttp.TCPConnector(limit=load.streams)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(
            *(
                _aiohttp_stream(session, url, load.tokens, until, seen, _RAMP_S * i / load.streams)
                for i in range(load.streams)
            )
        )
    return seen


def _reference(url: str, load: Load) -> tuple[dict[str, list[float]], float]:
    """The aiohttp client in this process, on the client core; its CPU % while it ran."""
    with on_core(CLIENT_CORE):
        cpu0, wall0 = time.process_time(), time.monotonic()
        seen = asyncio.run(_aiohttp_client(url, load))
        cpu = (time.process_time() - cpu0) / (time.monotonic() - wall0) * 100
    return seen, cpu


def _quantbench(
    url: str, load: Load, run_dir: Path, processes: int
) -> tuple[dict[str, list[float]], float]:
    """What the client saw per request, and the generator's mean CPU % per process while all
    streams ran (its own samples, not the ramp or the drain)."""
    core = CLIENT_CORE if processes == 1 else f"{SERVER_CORE},{CLIENT_CORE}"
    subprocess.run(
        [*pinned(core), sys.executable, "-m", "locust", "-f", "loadtest/locustfile.py",
         "--headless", "--host", url, "--qb-stages", str(load.streams),
         "--qb-warmup", f"{_RAMP_S:g}s", "--qb-stage-duration", f"{load.seconds:g}s",
         "--qb-endpoint", "completions", "--qb-stack", "vllm",
         "--qb-output-tokens", str(load.tokens), "--qb-prompt-tokens", "2",
         "--qb-run-dir", str(run_dir), "--qb-allow-overload", "--only-summary",
         "--loglevel", "ERROR", *(["--processes", str(processes)] if processes > 1 else [])],
        cwd=REPO_ROOT, check=True, capture_output=True,
    )  # fmt: skip
    seen = {}
    for line in (run_dir / "requests.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r["outcome"] != "ok":
            continue
        first = r["wall_sent_s"] + (r["first_token_ns"] - r["sent_ns"]) / 1e9
        times = [first]
        for gap_ms in r["itl_ms"]:  # one token per event here
            times.append(times[-1] + gap_ms / 1000)
        seen[r["request_id"]] = times
    by_pid: dict[int, list[float]] = defaultdict(list)
    for line in (run_dir / GENERATOR_FILE).read_text().splitlines():
        sample = json.loads(line)
        by_pid[sample["pid"]].append(sample["cpu_percent"])
    steady = [float(np.mean(s[2:-2])) for s in by_pid.values() if len(s) > 4]
    return seen, float(np.mean(steady)) if steady else float("nan")


def measure_one(load: Load, client: str, processes: int = 1) -> AccuracyResult:
    """One client against a fresh simulator on the server core."""
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "sim.jsonl"
        proc, url = start_sim(
            "--timing", "fixed", "--ttft-ms", "50", "--itl-ms", str(load.itl_ms),
            *(["--burst", str(load.burst)] if load.burst > 1 else []),
            "--port", "0", "--request-log", str(log),
            prefix=pinned(SERVER_CORE),
        )  # fmt: skip
        server_cpu = ProcessCpu(proc.pid)
        try:
            if client == QUANTBENCH:
                seen, cpu = _quantbench(url, load, Path(tmp) / "locust", processes)
            else:
                seen, cpu = _reference(url, load)
            sim_cpu = server_cpu.percent()
        finally:
            stop_sim(proc)
        server = _server_log(log, load.itl_ms / 1000, load.burst)
    requests, ttft50, ttft95, itl95 = _errors(seen, server.writes)
    late = server.lateness_ms or [float("nan")]
    return AccuracyResult(
        client, processes, requests, server.steady_rate(), ttft50, ttft95, itl95, cpu,
        float(np.percentile(late, 50)), float(np.percentile(late, 99)), sim_cpu,
    )  # fmt: skip


def measure_accuracy(load: Load) -> list[AccuracyResult]:
    """quantbench (one process) and the aiohttp reference, one after the other."""
    return [measure_one(load, QUANTBENCH), measure_one(load, REFERENCE)]
