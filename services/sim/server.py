"""Run one simulated server: build profile, engine, metrics and app, bind, serve until stopped.

Prints `quantbench-sim ready http://HOST:PORT` once listening; the orchestrator parses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
import time
from collections.abc import Callable

from aiohttp import web

from services.sim.config import SimSettings
from services.sim.engine import BatchingEngine, EngineObserver, FixedEngine, SimEngine
from services.sim.errors import SimConfigError
from services.sim.faults import FaultPlan, RequestLog
from services.sim.personalities import build_app
from services.sim.profiles import load_profile

__all__ = ["READY_PREFIX", "build_engine", "run", "serve"]

READY_PREFIX = "quantbench-sim ready "
_SHUTDOWN_TIMEOUT_S = 2.0


def build_engine(
    settings: SimSettings, observer: EngineObserver | None = None, faults: FaultPlan | None = None
) -> SimEngine:
    """The engine `settings.timing` asks for, its times divided by `speed` and its decode
    times multiplied by the `slowdown` fault; raises `SimConfigError` for an unknown profile or a
    `max_model_len` its KV cache cannot hold."""
    speed, slowdown = settings.speed, settings.faults.slowdown
    if settings.timing == "fixed":
        return FixedEngine(
            settings.ttft_ms / speed, settings.itl_ms * slowdown / speed, observer, faults=faults
        )
    profile = load_profile(settings.stack, settings.quant, settings.gpu)
    if settings.max_model_len > profile.kv_cache_tokens:  # vLLM refuses to start, too
        raise SimConfigError(
            f"max_model_len {settings.max_model_len} is more than the KV cache of the "
            f"{settings.stack}-{settings.quant} profile on {settings.gpu} holds "
            f"({profile.kv_cache_tokens} tokens): lower max_model_len"
        )
    scaled = profile.model_copy(
        update={
            "decode_step_base_ms": profile.decode_step_base_ms * slowdown / speed,
            "decode_step_per_seq_ms": profile.decode_step_per_seq_ms * slowdown / speed,
            "prefill_ms_per_token": profile.prefill_ms_per_token / speed,
        }
    )
    return BatchingEngine(scaled, observer, faults=faults)


def _print_ready(url: str) -> None:
    sys.stdout.write(f"{READY_PREFIX}{url}\n")
    sys.stdout.flush()


def _bind(host: str, port: int) -> socket.socket:
    """A bound socket that is not listening yet: connections to it are refused."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


async def _until(stop: asyncio.Event, deadline: float | None) -> bool:
    """Wait for `stop` or the monotonic `deadline` (None: forever); True if stopped."""
    if deadline is None:
        await stop.wait()
        return True
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), max(0.0, deadline - time.monotonic()))
    return stop.is_set()


async def _open(
    settings: SimSettings, faults: FaultPlan, sock: socket.socket, started_at: float | None
) -> web.AppRunner:
    app = build_app(settings, faults, started_at)
    runner = web.AppRunner(
        app, access_log=None, handler_cancellation=True, shutdown_timeout=_SHUTDOWN_TIMEOUT_S
    )
    await runner.setup()
    await web.SockSite(runner, sock).start()
    return runner


async def serve(
    settings: SimSettings,
    *,
    ready: Callable[[str], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until `stop` is set or the task is cancelled; then shut down cleanly.

    Once the port is bound, calls `ready(url)`; by default prints the ready line to stdout.
    The injected faults `refuse_for_s` (port refuses connections at first) and `restart_at_s`
    (connections dropped, counters reset, a new process start time) are carried out here.
    Without a `stop` event, SIGTERM and SIGINT stop the server (when in the main thread).
    """
    log = RequestLog(settings.request_log) if settings.request_log else None
    faults = FaultPlan(settings.faults, settings.speed, log=log)
    sock = _bind(settings.host, settings.port)
    port = sock.getsockname()[1]
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    handle_signals = stop is None
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    signals: list[signal.Signals] = []
    for sig in (signal.SIGTERM, signal.SIGINT) if handle_signals else ():
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not main thread
            loop.add_signal_handler(sig, stop.set)
            signals.append(sig)
    runner: web.AppRunner | None = None
    try:
        announce = ready or _print_ready
        refuse_until = faults.at(settings.faults.refuse_for_s)
        if settings.faults.refuse_for_s > 0:
            announce(f"http://{host}:{port}")  # bound but refusing, like a model still loading
            if await _until(stop, refuse_until):
                return
        runner = await _open(settings, faults, sock, None)
        if settings.faults.refuse_for_s == 0:
            announce(f"http://{host}:{port}")
        restart_at = faults.at(settings.faults.restart_at_s)
        if restart_at is not None and not await _until(stop, restart_at):
            await runner.cleanup()  # every connection drops, as when a process dies
            runner = None
            sock = _bind(settings.host, port)
            down_until = time.monotonic() + settings.faults.restart_down_s / settings.speed
            if await _until(stop, down_until):
                return
            runner = await _open(settings, faults, sock, time.time())
        await stop.wait()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        if runner is not None:
            await runner.cleanup()
        sock.close()
        faults.close()


def run(settings: SimSettings) -> int:
    """Blocking wrapper of `serve` for a CLI; returns the exit code (0 after a clean stop)."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(settings))
    return 0
