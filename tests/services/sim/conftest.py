"""Shared fixtures of the simulator tests: a scripted clock, in-process apps, a real server."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from services.sim import FixedEngine, SimSettings, VllmMetrics, create_vllm_app
from tests.procs import start_sim, stop_sim


class FakeClock:
    """Scripted time: `sleep(d)` advances the clock by `d` at once (one sleeper at a time)."""

    def __init__(self, start: float = 100.0) -> None:
        self.now = start
        self._timers: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._order = itertools.count()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.now += delay
        await asyncio.sleep(0)

    def call_at(self, when: float, callback: Callable[..., None], *args: Any) -> asyncio.Handle:
        """Like `loop.call_at`, in scripted time: timers run in due order, moving the clock."""
        entry = (when, next(self._order), callback, args)
        heapq.heappush(self._timers, entry)
        return asyncio.get_running_loop().call_soon(self._run_next)

    def _run_next(self) -> None:
        when, _, callback, args = heapq.heappop(self._timers)
        self.now = max(self.now, when)
        callback(*args)


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def clock_factory() -> type[FakeClock]:
    return FakeClock


ClientFn = Callable[[TestClient[Any, Any], CollectorRegistry], Awaitable[Any]]


def run_with_client(fn: ClientFn, **settings: Any) -> Any:
    """Run `fn(client, registry)` against an in-process app with fixed timing (fast)."""

    async def main() -> Any:
        sim = SimSettings.model_validate(
            {"timing": "fixed", "ttft_ms": 2.0, "itl_ms": 1.0} | settings
        )
        registry = CollectorRegistry()
        metrics = VllmMetrics(registry, sim.served_model_name, max_model_len=sim.max_model_len)
        engine = FixedEngine(sim.ttft_ms, sim.itl_ms, metrics)
        app = create_vllm_app(sim, engine, registry)
        async with TestClient(TestServer(app)) as client:
            return await fn(client, registry)

    return asyncio.run(main())


@pytest.fixture
def with_client() -> Callable[..., Any]:
    """`with_client(fn, **settings)`: see `run_with_client`."""
    return run_with_client


@pytest.fixture
def sim_process() -> Iterator[Callable[..., tuple[subprocess.Popen[str], str]]]:
    """Start simulator processes (see `start_sim`); any still running are killed afterwards."""
    started: list[subprocess.Popen[str]] = []

    def start(*args: str) -> tuple[subprocess.Popen[str], str]:
        proc, url = start_sim(*args)
        started.append(proc)
        return proc, url

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.fixture(scope="session")
def sim_url() -> Iterator[str]:
    """One real simulator process for the session (fixed timing: TTFT 50 ms, ITL 2 ms)."""
    proc, url = start_sim("--port", "0", "--timing", "fixed", "--ttft-ms", "50", "--itl-ms", "2")
    yield url
    stop_sim(proc)


@pytest.fixture(scope="session")
def exl2_sim_url() -> Iterator[str]:
    """One real `python -m services.sim --stack exllamav2` process (fixed timing: 5 ms / 1 ms)."""
    proc, url = start_sim(
        "--stack", "exllamav2", "--quant", "exl2", "--timing", "fixed",
        "--ttft-ms", "5", "--itl-ms", "1", "--port", "0",
    )  # fmt: skip
    yield url
    stop_sim(proc)
