"""Real processes for tests: start one, wait for its ready line with a deadline, stop it."""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
READY_PREFIX = "quantbench-sim ready "


def start_sim(
    *args: str,
    module: str = "services.sim",
    deadline_s: float = 20.0,
    prefix: Sequence[str] = (),
) -> tuple[subprocess.Popen[str], str]:
    """Start `python -m MODULE ARGS` (a simulator) and return it with its ready-line URL;
    `prefix` runs it under another command (benchmarks: `taskset -c 0`)."""
    command = [*prefix, sys.executable, "-m", module,
               *(["sim"] if module == "quantbench" else []), *args]  # fmt: skip
    proc = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if selector.select(timeout=end - time.monotonic()):
                line = proc.stdout.readline()
                if line.startswith(READY_PREFIX):
                    return proc, line[len(READY_PREFIX) :].strip()
                if not line:  # EOF: the process died
                    break
    proc.kill()
    _, err = proc.communicate()
    raise AssertionError(f"simulator did not become ready: {err}")


def stop_sim(proc: subprocess.Popen[str], timeout_s: float = 10.0) -> tuple[int, str]:
    """SIGTERM the process; return its exit code and stderr."""
    proc.terminate()
    try:
        _, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return proc.returncode, err


def written_rows(path: Path) -> list[dict[str, Any]]:
    """The JSON lines a running process has written to `path` so far (none if it has no such
    file yet), skipping the line it may be writing right now."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_bytes().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows
