"""Live helpers: simulators, a real Prometheus scraping them, streamed client requests."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from analysis.server import MetricsRecorder, PrometheusClient, PromTarget

PROMETHEUS = Path("/usr/bin/prometheus")
# A long TTFT keeps the client's own overhead far below the 10% by which client and server
# mean TTFT may differ: this harness's asyncio client read ~60 ms late at load 11 on the 2-core
# CI machine, 6% of 1 s.
SIM_ARGS = ("--timing", "fixed", "--ttft-ms", "1000", "--itl-ms", "5")
STACKS = {"vllm": "awq", "tgi": "awq", "exllamav2": "exl2"}
RESTART_TARGET = "vllm-restart"
MAX_TOKENS = 8


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Callable[[], bool], what: str, deadline_s: float = 30.0) -> None:
    """Poll `condition` until true; fail with `what` after the deadline (no blind sleeps)."""
    end = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline_s:g} s waiting for {what}")
        time.sleep(0.05)


@dataclass
class ClientResult:
    ok: bool
    ttft_ms: float
    tokens: int
    end_wall_s: float


async def _one(client: httpx.AsyncClient, stack: str, url: str, i: int) -> ClientResult:
    if stack == "tgi":
        path = "/generate_stream"
        body: dict[str, object] = {
            "inputs": f"request {i}: tell me about load tests",
            "parameters": {"max_new_tokens": MAX_TOKENS},
        }
    else:
        path = "/v1/completions"
        body = {"prompt": f"request {i}: tell me about load tests", "max_tokens": MAX_TOKENS}
        body["stream"] = True
    sent = time.perf_counter()
    first, tokens, ended = None, 0, False
    try:
        async with client.stream("POST", url + path, json=body) as response:
            if response.status_code != 200:
                return ClientResult(False, float("nan"), 0, time.time())
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if payload == "[DONE]":
                    ended = True
                    continue
                event = json.loads(payload)
                if "error" in event:  # e.g. the server going down mid-stream
                    return ClientResult(False, float("nan"), tokens, time.time())
                text = event["token"]["text"] if stack == "tgi" else event["choices"][0]["text"]
                if text:
                    first = first or time.perf_counter()
                    tokens += 1
                if stack == "tgi" and event.get("generated_text") is not None:
                    ended = True
    except (httpx.HTTPError, ValueError):
        return ClientResult(False, float("nan"), tokens, time.time())
    ttft = (first - sent) * 1000 if first else float("nan")
    return ClientResult(ended and first is not None, ttft, tokens, time.time())


async def _drive(jobs: list[tuple[str, str]], n: int, concurrency: int) -> list[list[ClientResult]]:
    async with httpx.AsyncClient(timeout=10.0) as client:

        async def one_target(stack: str, url: str) -> list[ClientResult]:
            limit = asyncio.Semaphore(concurrency)

            async def run(i: int) -> ClientResult:
                async with limit:
                    return await _one(client, stack, url, i)

            return list(await asyncio.gather(*(run(i) for i in range(n))))

        return list(await asyncio.gather(*(one_target(*job) for job in jobs)))


def drive(stack: str, url: str, n: int, concurrency: int = 4) -> list[ClientResult]:
    """`n` streamed requests of MAX_TOKENS tokens, `concurrency` at a time."""
    return asyncio.run(_drive([(stack, url)], n, concurrency))[0]


def drive_all(jobs: list[tuple[str, str]], n: int) -> list[list[ClientResult]]:
    """`n` requests to each (stack, url) at once, all targets in parallel."""
    return asyncio.run(_drive(jobs, n, n))


@dataclass
class Sim:
    name: str
    stack: str
    url: str
    proc: subprocess.Popen[str] | None = None

    @property
    def hostport(self) -> str:
        return self.url.removeprefix("http://")


@dataclass
class PromEnv:
    client: PrometheusClient
    base_url: str
    run_dir: Path
    sims: dict[str, Sim]
    recorders: dict[str, MetricsRecorder]
    restart_port: int

    def targets(self) -> dict[str, PromTarget]:
        names = [*self.sims, RESTART_TARGET]
        stacks = {**{n: s.stack for n, s in self.sims.items()}, RESTART_TARGET: "vllm"}
        return {n: PromTarget(stacks[n], f'target="{n}"') for n in names}

    def prom_last_ok(self, name: str) -> float:
        """When Prometheus' latest successful scrape of `name` began (-1: none yet)."""
        result = self.client.query_matrix(f'up{{target="{name}"}}[10s]', time.time())
        ok = [t for _, samples in result for t, v in samples if v == 1]
        return max(ok, default=-1.0)

    def scraped_after(self, names: list[str], wall_s: float) -> bool:
        """Both Prometheus and the recorder have a successful scrape that began after wall_s."""
        for name in names:
            last = self.recorders[name].last_ok_s
            if last is None or last <= wall_s or self.prom_last_ok(name) <= wall_s:
                return False
        return True


def write_config(path: Path, targets: dict[str, str]) -> None:
    jobs = "".join(
        f"  - job_name: {name}\n"
        f"    static_configs:\n"
        f"      - targets: ['{hostport}']\n"
        f"        labels: {{target: {name}}}\n"
        for name, hostport in targets.items()
    )
    path.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n" + jobs
    )
