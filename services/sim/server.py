"""Run one simulated server: build profile, engine, metrics and app, bind, serve until stopped.

Prints `quantbench-sim ready http://HOST:PORT` once listening; the orchestrator parses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable

from aiohttp import web

from services.sim.config import SimSettings
from services.sim.engine import BatchingEngine, EngineObserver, FixedEngine, SimEngine
from services.sim.personalities import build_app
from services.sim.profiles import load_profile

__all__ = ["READY_PREFIX", "build_engine", "run", "serve"]

READY_PREFIX = "quantbench-sim ready "
_SHUTDOWN_TIMEOUT_S = 2.0


def build_engine(settings: SimSettings, observer: EngineObserver | None = None) -> SimEngine:
    """The engine `settings.timing` asks for; raises `SimConfigError` for an unknown profile."""
    if settings.timing == "fixed":
        return FixedEngine(settings.ttft_ms, settings.itl_ms, observer)
    return BatchingEngine(load_profile(settings.stack, settings.quant, settings.gpu), observer)


def _print_ready(url: str) -> None:
    sys.stdout.write(f"{READY_PREFIX}{url}\n")
    sys.stdout.flush()


async def serve(
    settings: SimSettings,
    *,
    ready: Callable[[str], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until `stop` is set or the task is cancelled; then shut down cleanly.

    Once listening, calls `ready(url)`; by default prints the ready line to stdout. Without a
    `stop` event, SIGTERM and SIGINT stop the server (when running in the main thread).
    """
    app = build_app(settings)
    runner = web.AppRunner(
        app, access_log=None, handler_cancellation=True, shutdown_timeout=_SHUTDOWN_TIMEOUT_S
    )
    handle_signals = stop is None
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    signals: list[signal.Signals] = []
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.port)
        await site.start()
        port = runner.addresses[0][1]
        host = f"[{settings.host}]" if ":" in settings.host else settings.host
        (ready or _print_ready)(f"http://{host}:{port}")
        for sig in (signal.SIGTERM, signal.SIGINT) if handle_signals else ():
            with contextlib.suppress(NotImplementedError, RuntimeError):  # not main thread
                loop.add_signal_handler(sig, stop.set)
                signals.append(sig)
        await stop.wait()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        await runner.cleanup()


def run(settings: SimSettings) -> int:
    """Blocking wrapper of `serve` for a CLI; returns the exit code (0 after a clean stop)."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(settings))
    return 0
