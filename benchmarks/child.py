"""Run a measurement in a fresh Python process, so its imports, start-up and peak memory are
its own and not this process's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["run_child"]


def run_child(code: str, *args: str, what: str) -> tuple[float, dict[str, float]]:
    """Wall seconds and the JSON object `code` prints last; run from the repository root."""
    root = Path(__file__).resolve().parents[1]
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed: {done.stderr[-2000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return wall, result
