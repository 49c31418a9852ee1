"""Starting and stopping simulator processes for `sim:` targets.

The simulator prints `quantbench-sim ready http://HOST:PORT` once bound (port 0 lets the OS
choose); its output goes to a log file in the run directory, polled for that line.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from quantbench.errors import HarnessError
from services.sim.config import SimSettings
from services.sim.faults import FaultConfig

__all__ = ["sim_arguments", "simulator"]

_READY = re.compile(rb"quantbench-sim ready (http://\S+)")
_POLL_S = 0.05


def sim_arguments(settings: SimSettings) -> list[str]:
    """The `python -m services.sim` command line for these settings."""
    args = [
        "--stack", settings.stack,
        "--quant", settings.quant,
        "--gpu", settings.gpu,
        "--host", settings.host,
        "--port", str(settings.port),
        "--timing", settings.timing,
        "--ttft-ms", str(settings.ttft_ms),
        "--itl-ms", str(settings.itl_ms),
        "--max-model-len", str(settings.max_model_len),
        "--max-concurrent-requests", str(settings.max_concurrent_requests),
        "--seed", str(settings.seed),
    ]  # fmt: skip
    if settings.model:
        args += ["--model", settings.model]
    if settings.speed != 1.0:
        args += ["--speed", str(settings.speed)]
    if settings.request_log is not None:
        args += ["--request-log", str(settings.request_log)]
    return [sys.executable, "-m", "services.sim", *args, *_fault_arguments(settings.faults)]


_FAULT_FLAGS = (
    ("--stall-at", "stall_at_s"),
    ("--stall-for", "stall_for_s"),
    ("--cut-rate", "cut_rate"),
    ("--malformed-rate", "malformed_rate"),
    ("--hang-rate", "hang_rate"),
    ("--refuse-for", "refuse_for_s"),
    ("--restart-at", "restart_at_s"),
    ("--restart-down", "restart_down_s"),
    ("--slowdown", "slowdown"),
    ("--fault-seed", "seed"),
)


def _fault_arguments(faults: FaultConfig) -> list[str]:
    args = [f"--error={error.status}:{error.rate}" for error in faults.errors]
    for flag, field in _FAULT_FLAGS:
        value = getattr(faults, field)
        if value is not None:
            args.append(f"{flag}={value}")
    return args


def _wait_ready(process: subprocess.Popen[bytes], log: Path, name: str, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        match = _READY.search(log.read_bytes())
        if match:
            return match.group(1).decode()
        if process.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
            raise HarnessError(
                f"target {name}: simulator exited with code {process.returncode}: {tail[0]} "
                f"(full log: {log})"
            )
        time.sleep(_POLL_S)
    raise HarnessError(f"target {name}: simulator not ready within {timeout_s:.0f} s (log: {log})")


@contextmanager
def simulator(
    name: str, settings: SimSettings, log: Path, timeout_s: float = 30.0
) -> Iterator[str]:
    """Run a simulator for the duration of the block; yields its base URL."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as sink:
        process = subprocess.Popen(
            sim_arguments(settings), stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    try:
        yield _wait_ready(process, log, name, timeout_s)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
