"""Simulator speed: N concurrent streams against one simulator process (one core).

The client is a plain asyncio + aiohttp reader in this process (the other core); the
simulator's request log gives each token's lateness against its simulated due time.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import numpy as np

from tests.procs import start_sim, stop_sim

__all__ = ["SpeedResult", "measure_sim_speed"]


@dataclass(frozen=True)
class SpeedResult:
    streams: int
    tokens: int
    seconds: float
    lateness_p50_ms: float
    lateness_p99_ms: float
    sim_cpu_percent: float

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _stream(
    session: aiohttp.ClientSession, url: str, tokens: int, until: float, offset_s: float
) -> int:
    body = {"model": None, "prompt": "hello", "max_tokens": tokens, "stream": True}
    received = 0
    await asyncio.sleep(offset_s)  # streams are not phase-locked, as real users are not
    while time.monotonic() < until:
        async with session.post(f"{url}/v1/completions", json=body) as resp:
            # Drain in whatever pieces arrive: this client only has to keep up, the
            # simulator's own log times the tokens.
            while chunk := await resp.content.readany():
                received += chunk.count(b"data: {")
    return received


async def _drive(url: str, streams: int, tokens: int, seconds: float, itl_ms: float) -> int:
    until = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=streams)
    # Spread the starts over one request's duration: a steady state where requests begin
    # and end at random phases, as real users' do (not all 256 in the same millisecond).
    duration_s = tokens * itl_ms / 1000.0
    offsets = [i * duration_s / streams for i in range(streams)]
    async with aiohttp.ClientSession(connector=connector) as session:
        counts = await asyncio.gather(
            *(_stream(session, url, tokens, until, offset) for offset in offsets)
        )
    return sum(counts)


def measure_sim_speed(
    streams: int = 256, itl_ms: float = 10.0, seconds: float = 8.0
) -> SpeedResult:
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "sim.jsonl"
        proc, url = start_sim(
            "--timing", "fixed", "--ttft-ms", "20", "--itl-ms", str(itl_ms), "--port", "0",
            "--request-log", str(log),
        )  # fmt: skip
        try:
            cpu_before, started = _cpu_seconds(proc.pid), time.monotonic()
            tokens = asyncio.run(_drive(url, streams, 100, seconds, itl_ms))
            elapsed = time.monotonic() - started
            cpu = (_cpu_seconds(proc.pid) - cpu_before) / elapsed * 100
        finally:
            stop_sim(proc)
        lateness = np.array(
            [x for line in log.read_text().splitlines() for x in json.loads(line)["lateness_ms"]]
        )
    return SpeedResult(
        streams, tokens, elapsed, float(np.percentile(lateness, 50)),
        float(np.percentile(lateness, 99)), cpu,
    )  # fmt: skip
