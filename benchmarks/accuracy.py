"""Client accuracy under load: TTFT and ITL as the client saw them vs the server's own stamps.

One fixed-timing simulator logs when it actually wrote each token (due time + lateness);
quantbench's Locust generator (one process, one core) and a plain asyncio + aiohttp client
each drive it with N closed-loop streams, and every request is matched to the server's log
by its X-Request-Id. The error is client time − server write time: what the client adds.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from loadtest.generator_stats import GENERATOR_FILE
from tests.procs import REPO_ROOT, start_sim, stop_sim

__all__ = ["AccuracyResult", "measure_accuracy"]


@dataclass(frozen=True)
class AccuracyResult:
    client: str
    requests: int
    ttft_err_p50_ms: float
    ttft_err_p95_ms: float
    itl_err_p95_ms: float
    client_cpu_percent: float | None = None  # the generator's own samples (Locust only)


def _server_writes(entry: dict[str, Any], itl_s: float) -> list[float]:
    """Wall times the simulator wrote each token: due time plus its measured lateness."""
    first = entry["first_token"]
    return [first + k * itl_s + late / 1000 for k, late in enumerate(entry["lateness_ms"])]


def _errors(
    client: dict[str, list[float]],
    server: dict[str, list[float]],
    name: str,
    cpu_percent: float | None,
) -> AccuracyResult:
    ttft: list[float] = []
    itl: list[float] = []
    for request_id, seen in client.items():
        wrote = server.get(request_id)
        if not wrote or len(wrote) != len(seen):
            continue
        ttft.append((seen[0] - wrote[0]) * 1000)
        itl.extend((np.diff(seen) - np.diff(wrote)) * 1000)
    return AccuracyResult(
        name, len(ttft), float(np.percentile(ttft, 50)), float(np.percentile(ttft, 95)),
        float(np.percentile(np.abs(itl), 95)), cpu_percent,
    )  # fmt: skip


async def _aiohttp_stream(
    session: aiohttp.ClientSession,
    url: str,
    tokens: int,
    until: float,
    seen: dict[str, list[float]],
    offset_s: float,
) -> None:
    body = {"model": None, "prompt": "hello there", "max_tokens": tokens, "stream": True,
            "ignore_eos": True}  # fmt: skip
    await asyncio.sleep(offset_s)  # started over 2 s, as the Locust users ramp up
    while time.monotonic() < until:
        request_id = uuid.uuid4().hex
        stamps: list[float] = []
        async with session.post(
            f"{url}/v1/completions", json=body, headers={"X-Request-Id": request_id}
        ) as resp:
            while line := await resp.content.readline():
                if line.startswith(b"data: {"):
                    stamps.append(time.time())
        seen[request_id] = stamps


async def _aiohttp_client(
    url: str, streams: int, tokens: int, seconds: float
) -> dict[str, list[float]]:
    seen: dict[str, list[float]] = {}
    until = time.monotonic() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=streams)) as session:
        streams_ = [
            _aiohttp_stream(session, url, tokens, until + 2.0, seen, 2.0 * i / streams)
            for i in range(streams)
        ]
        await asyncio.gather(*streams_)
    return seen


def _locust_client(
    url: str, streams: int, tokens: int, seconds: float, run_dir: Path
) -> tuple[dict[str, list[float]], float]:
    """What the client saw per request, and the generator's mean CPU % while all streams ran."""
    subprocess.run(
        [sys.executable, "-m", "locust", "-f", "loadtest/locustfile.py", "--headless",
         "--host", url, "--qb-stages", str(streams), "--qb-warmup", "2s",
         "--qb-stage-duration", f"{seconds}s", "--qb-endpoint", "completions",
         "--qb-stack", "vllm", "--qb-output-tokens", str(tokens), "--qb-prompt-tokens", "2",
         "--qb-run-dir", str(run_dir), "--only-summary", "--loglevel", "ERROR"],
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
    samples = [json.loads(line) for line in (run_dir / GENERATOR_FILE).read_text().splitlines()]
    steady = [s["cpu_percent"] for s in samples[2:-2]]  # not the ramp, not the drain
    return seen, float(np.mean(steady)) if steady else float("nan")


def measure_accuracy(
    streams: int = 64, tokens: int = 128, itl_ms: float = 10.0, seconds: float = 8.0
) -> list[AccuracyResult]:
    results: list[AccuracyResult] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("quantbench (Locust, 1 process)", "asyncio + aiohttp (reference)"):
            log = Path(tmp) / f"{len(results)}.jsonl"
            cpu = None
            proc, url = start_sim(
                "--timing", "fixed", "--ttft-ms", "50", "--itl-ms", str(itl_ms), "--port", "0",
                "--request-log", str(log),
            )  # fmt: skip
            try:
                if name.startswith("quantbench"):
                    run_dir = Path(tmp) / "locust"
                    seen, cpu = _locust_client(url, streams, tokens, seconds, run_dir)
                else:
                    seen = asyncio.run(_aiohttp_client(url, streams, tokens, seconds))
            finally:
                stop_sim(proc)
            server = {}
            for line in log.read_text().splitlines():
                entry = json.loads(line)
                if entry["request_id"] and entry["first_token"] is not None:
                    server[entry["request_id"]] = _server_writes(entry, itl_ms / 1000)
            results.append(_errors(seen, server, name, cpu))
    return results
