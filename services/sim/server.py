"""Run one simulated server: build profile, engine, metrics and app, bind, serve until stopped.

Prints `quantbench-sim ready http://HOST:PORT` once listening; the orchestrator parses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import socket
import sys
import time
from collections.abc import Callable

from aiohttp import web

from services.sim.config import SimSettings
from services.sim.faults import FaultPlan, RequestLog
from services.sim.gpu_power import SimulatedGpu, power_model
from services.sim.personalities import build_app

__all__ = ["READY_PREFIX", "run", "serve"]

READY_PREFIX = "quantbench-sim ready "
_SHUTDOWN_TIMEOUT_S = 2.0


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


async def _until(
    stop: asyncio.Event, deadline: float | None, also: asyncio.Event | None = None
) -> bool:
    """Wait for `stop`, the monotonic `deadline` (None: none) or `also`; True if stopped."""
    waits = [asyncio.ensure_future(stop.wait())]
    if also is not None:
        waits.append(asyncio.ensure_future(also.wait()))
    timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiting in waits:
            waiting.cancel()
    return stop.is_set()


async def _open(
    settings: SimSettings,
    faults: FaultPlan,
    sock: socket.socket,
    started_at: float | None,
    gpu: SimulatedGpu,
) -> web.AppRunner:
    app = build_app(settings, faults, started_at, gpu)
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
    The injected faults `refuse_for_s` (port refuses connections at first) and `restart_at_s` /
    `restart_after_requests` (connections dropped, counters reset, a new process start time)
    are carried out here.
    Without a `stop` event, SIGTERM and SIGINT stop the server (when in the main thread).
    """
    log = RequestLog(settings.request_log) if settings.request_log else None
    faults = FaultPlan(settings.faults, settings.speed, log=log)
    gpu = SimulatedGpu(power_model(settings))  # the card outlives a simulated restart
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
        runner = await _open(settings, faults, sock, None, gpu)
        if settings.faults.refuse_for_s == 0:
            announce(f"http://{host}:{port}")
        if settings.faults.restart_at_s is not None and await _until(
            stop, None, faults.clock_started
        ):
            return
        restart_at = faults.at(settings.faults.restart_at_s)
        by_count = settings.faults.restart_after_requests is not None
        if (restart_at is not None or by_count) and not await _until(
            stop, restart_at, faults.restart_due if by_count else None
        ):
            await runner.cleanup()  # every connection drops, as when a process dies
            runner = None
            sock = _bind(settings.host, port)
            down_until = time.monotonic() + settings.faults.restart_down_s / settings.speed
            if await _until(stop, down_until):
                return
            runner = await _open(settings, faults, sock, time.time(), gpu)
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
    # What the imports allocated lives as long as the process: out of the collector's way,
    # its full passes (pauses that make every stream's tokens late at once) stay short.
    gc.collect()
    gc.freeze()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(settings))
    return 0
