"""Simulator speed: N concurrent streams against one simulator process on its own core.

The client is a plain asyncio + aiohttp reader in this process, on the other core, sending
quantbench's own request (vLLM per-chunk usage: the largest chunks the simulator writes); the
simulator's request log gives each token's lateness against its simulated due time, and
/proc its CPU while the streams ran.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import numpy as np

from benchmarks.accuracy import request_body
from benchmarks.cores import CLIENT_CORE, SERVER_CORE, ProcessCpu, on_core, pinned
from tests.procs import start_sim, stop_sim

__all__ = ["SpeedResult", "measure_sim_speed"]

_TOKENS = 100


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


async def _stream(session: aiohttp.ClientSession, url: str, until: float, offset_s: float) -> int:
    body = request_body(_TOKENS)
    received = 0
    await asyncio.sleep(offset_s)  # streams are not phase-locked, as real users are not
    while time.monotonic() < until:
        async with session.post(f"{url}/v1/completions", json=body) as resp:
            # Drain in whatever pieces arrive: this client only has to keep up, the
            # simulator's own log times the tokens.
            while chunk := await resp.content.readany():
                received += chunk.count(b'"text"')
    return received


async def _drive(url: str, streams: int, seconds: float, itl_ms: float) -> int:
    until = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=streams)
    # Spread the starts over one request's duration: a steady state where requests begin
    # and end at random phases, as real users' do (not all 256 in the same millisecond).
    duration_s = _TOKENS * itl_ms / 1000.0
    offsets = [i * duration_s / streams for i in range(streams)]
    async with aiohttp.ClientSession(connector=connector) as session:
        counts = await asyncio.gather(*(_stream(session, url, until, o) for o in offsets))
    return sum(counts)


def measure_sim_speed(
    streams: int = 256, itl_ms: float = 10.0, seconds: float = 8.0
) -> SpeedResult:
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "sim.jsonl"
        proc, url = start_sim(
            "--timing", "fixed", "--ttft-ms", "20", "--itl-ms", str(itl_ms), "--port", "0",
            "--request-log", str(log), prefix=pinned(SERVER_CORE),
        )  # fmt: skip
        try:
            cpu = ProcessCpu(proc.pid)
            started = time.monotonic()
            with on_core(CLIENT_CORE):
                tokens = asyncio.run(_drive(url, streams, seconds, itl_ms))
            elapsed = time.monotonic() - started
            sim_cpu = cpu.percent()
        finally:
            stop_sim(proc)
        lateness = np.array(
            [x for line in log.read_text().splitlines() for x in json.loads(line)["lateness_ms"]]
        )
    return SpeedResult(
        streams, tokens, elapsed, float(np.percentile(lateness, 50)),
        float(np.percentile(lateness, 99)), sim_cpu,
    )  # fmt: skip
