"""Starting and stopping simulator processes for `sim:` targets.

The simulator prints `quantbench-sim ready http://HOST:PORT` once bound (port 0 lets the OS
choose); its output goes to a log file in the run directory, polled for that line.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from quantbench.children import Child, spawn
from quantbench.errors import HarnessError
from services.sim.config import SimSettings

__all__ = ["sim_arguments", "simulator"]

_READY = re.compile(rb"quantbench-sim ready (http://\S+)")
_POLL_S = 0.05


def sim_arguments(settings: SimSettings) -> list[str]:
    """The `python -m services.sim` command line for these settings: the whole model as JSON,
    so every field (nested faults included) reaches the simulator as validated here."""
    return [sys.executable, "-m", "services.sim", "--settings-json", settings.model_dump_json()]


def _wait_ready(process: Child, log: Path, name: str, timeout_s: float) -> str:
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
    with spawn(sim_arguments(settings), log) as process:
        yield _wait_ready(process, log, name, timeout_s)
