"""A `quantbench run` killed with SIGKILL at a chosen moment, for the resume tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from quantbench.errors import HarnessError
from quantbench.rundir import locked
from tests.procs import REPO_ROOT


def lock_is_free(run_dir: Path) -> bool:
    try:
        with locked(run_dir):
            return True
    except HarnessError:
        return False


def kill_run_when(
    config: Path, out: Path, ready: Callable[[Path], bool], what: str, deadline_s: float = 90.0
) -> Path:
    """Start `quantbench run CONFIG --out OUT` in its own session, SIGKILL it (alone: its
    generator and simulators die with it) once `ready(run_dir)`, and return the run
    directory once the dying generator has released its lock."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "quantbench", "run", str(config), "--out", str(out)],
        cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + deadline_s
    run_dir = None
    while time.monotonic() < deadline:
        runs = list(out.iterdir()) if out.exists() else []
        if runs and ready(runs[0]):
            run_dir = runs[0]
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    if run_dir is None:
        pytest.fail(f"the run never reached {what}")
    # The generator dies with quantbench (parent-death signal), a moment later: until then
    # it holds the run directory's lock and a resume is refused.
    deadline = time.monotonic() + 10
    while not lock_is_free(run_dir):
        assert time.monotonic() < deadline, "the killed run's generator kept its lock"
        time.sleep(0.05)
    return run_dir
