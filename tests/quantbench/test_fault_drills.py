"""Fault drills: `quantbench run` killed with SIGKILL or stopped with SIGTERM leaves no
process of the run alive, and a run directory in use cannot be resumed by a second run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from quantbench.children import spawn
from quantbench.cli import main
from quantbench.errors import HarnessError
from quantbench.rundir import locked
from tests.procs import REPO_ROOT
from tests.procs import written_rows as lines

pytestmark = pytest.mark.slow

CONFIG = """
name: drill
targets:
  - name: sim
    sim: {timing: fixed, ttft_ms: 5, itl_ms: 2}
workload: {prompt_tokens: 8, output_tokens: 4}
load: {stages: [2, 2], warmup: 0.5s, stage_duration: 30s, processes: 2}
"""


def poll(condition: Callable[[], bool], deadline_s: float, what: str) -> None:
    end = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < end, what
        time.sleep(0.05)


def alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def start_run(tmp_path: Path) -> tuple[subprocess.Popen[str], Path, list[psutil.Process]]:
    """`quantbench run` with a simulator and two Locust workers, once records flow."""
    config = tmp_path / "bench.yaml"
    config.write_text(CONFIG)
    out = tmp_path / "runs"
    proc = subprocess.Popen(
        [sys.executable, "-m", "quantbench", "run", str(config), "--out", str(out)],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    run_dirs: list[Path] = []

    def flowing() -> bool:
        assert proc.poll() is None, proc.communicate()
        run_dirs[:] = list(out.iterdir()) if out.exists() else []
        return bool(run_dirs) and len(lines(run_dirs[0] / "requests.jsonl")) > 20

    poll(flowing, 60, "the run never sent its first requests")
    family = psutil.Process(proc.pid).children(recursive=True)
    names = sorted(" ".join(p.cmdline()[1:4]) for p in family)
    assert len(family) == 4, names  # the simulator, Locust's master and its two workers
    return proc, run_dirs[0], family


def locust_master(family: list[psutil.Process]) -> psutil.Process:
    masters = [p for p in family if "locust" in p.cmdline() and p.parent() not in family]
    assert len(masters) == 1
    return masters[0]


def test_sigkill_leaves_no_process_of_the_run_alive(tmp_path: Path) -> None:
    proc, run_dir, family = start_run(tmp_path)
    listening = [
        c.laddr
        for c in locust_master(family).net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN
    ]
    assert listening and all(addr.ip == "127.0.0.1" for addr in listening), listening
    os.kill(proc.pid, signal.SIGKILL)  # quantbench alone: its children get no signal from us
    proc.communicate()
    poll(lambda: not any(alive(p) for p in family), 15, "a child outlived quantbench")
    size = (run_dir / "requests.jsonl").stat().st_size
    time.sleep(0.5)  # nothing is left to write: the file must not grow
    assert (run_dir / "requests.jsonl").stat().st_size == size


def test_sigterm_stops_cleanly_and_says_how_to_resume(tmp_path: Path) -> None:
    proc, run_dir, family = start_run(tmp_path)
    # While it runs, the run directory is locked: a resume must not mix a second run in.
    assert main(["run", "--resume", str(run_dir)]) == 2
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    (line,) = err.strip().splitlines()
    assert line == (
        f"quantbench: error: interrupted by SIGTERM; what was recorded is kept in {run_dir} "
        f"(`quantbench report {run_dir}`, or `quantbench run --resume {run_dir}`)"
    )
    poll(lambda: not any(alive(p) for p in family), 15, "a child outlived quantbench")
    stages = lines(run_dir / "stages.jsonl")
    assert [(s["stage"], s["completed"]) for s in stages] == [(0, False)]
    records = {r["request_id"]: r for r in lines(run_dir / "requests.jsonl")}
    journal = {e["request_id"] for e in lines(run_dir / "scheduled.jsonl")}
    assert journal <= set(records), "every request sent has its record, even in flight"
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["interrupted"] == "SIGTERM" and meta["ended_at"]
    assert [t["name"] for t in meta["targets"]] == ["sim"] and meta["targets"][0]["model"]


def test_the_lock_stays_held_while_a_child_that_inherited_it_lives(tmp_path: Path) -> None:
    with locked(tmp_path) as fd:
        child = spawn([sys.executable, "-c", "import time; time.sleep(60)"],
                      tmp_path / "child.log", keep_fds=(fd,))  # fmt: skip
    try:
        in_use = pytest.raises(HarnessError, match="is in use by a run that is still going")
        with in_use, locked(tmp_path):
            pass
    finally:
        child.stop(grace_s=5)
    with locked(tmp_path):
        pass  # free again once the last holder is gone


def test_a_child_dies_with_its_parent_even_by_sigkill(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    parent_code = (
        "import sys, time; from pathlib import Path; from quantbench.children import spawn; "
        "c = spawn([sys.executable, '-c', 'import time; time.sleep(60)'], Path(sys.argv[1])); "
        "Path(sys.argv[2]).write_text(str(c.pid)); time.sleep(60)"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", parent_code, str(tmp_path / "c.log"), str(pid_file)], cwd=REPO_ROOT
    )
    poll(lambda: pid_file.exists() and pid_file.read_text() != "", 20, "no child started")
    child = psutil.Process(int(pid_file.read_text()))
    assert alive(child)
    parent.kill()
    parent.wait()
    poll(lambda: not alive(child), 10, "the child outlived its SIGKILLed parent")
