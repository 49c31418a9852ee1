"""`repeats: 2` end to end on simulators: targets take turns (a, b, a, b) so drift hits both
alike, stage numbers run on across repeats, the report shows the spread between repeats, and
a run killed in the middle of a repeat resumes exactly where it stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from quantbench.cli import main
from quantbench.errors import HarnessError
from quantbench.rundir import locked
from tests.procs import REPO_ROOT
from tests.procs import written_rows as lines

pytestmark = pytest.mark.slow

CONFIG = """
name: repeated
repeats: 2
targets:
  - name: a
    sim: {timing: fixed, ttft_ms: 5, itl_ms: 2}
  - name: b
    sim: {timing: fixed, ttft_ms: 8, itl_ms: 2}
workload: {prompt_tokens: 8, output_tokens: 4}
load: {stages: [2, 3], warmup: 0.3s, stage_duration: 1.5s}
analysis: {max_generator_cpu_percent: 100}
"""


def lock_is_free(run_dir: Path) -> bool:
    try:
        with locked(run_dir):
            return True
    except HarnessError:
        return False


def test_two_repeats_interleave_and_resume_after_a_kill_inside_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bench.yaml"
    config.write_text(CONFIG)
    out = tmp_path / "runs"
    proc = subprocess.Popen(
        [sys.executable, "-m", "quantbench", "run", str(config), "--out", str(out)],
        cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 90
    run_dir = None
    while time.monotonic() < deadline:  # kill it inside b's second stage of repeat 1
        runs = list(out.iterdir()) if out.exists() else []
        if runs:
            run_dir = runs[0]
            done = {(s["target"], s["stage"]) for s in lines(run_dir / "stages.jsonl")}
            in_b1 = [r for r in lines(run_dir / "requests.jsonl")
                     if r["target"] == "b" and r["stage"] == 1]  # fmt: skip
            if ("b", 0) in done and len(in_b1) >= 5:
                break
        time.sleep(0.05)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("the run never reached b's second stage")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert run_dir is not None
    deadline = time.monotonic() + 10
    while not lock_is_free(run_dir):
        assert time.monotonic() < deadline, "the killed run's generator kept its lock"
        time.sleep(0.05)
    capsys.readouterr()

    assert main(["run", "--resume", str(run_dir)]) == 0
    out_text = capsys.readouterr().out
    assert "resuming: a from repeat 2, stage 1 of 2, b from repeat 1, stage 2 of 2" in out_text

    stages = sorted(lines(run_dir / "stages.jsonl"), key=lambda s: s["start_wall_s"])
    order = [(s["target"], s["stage"], s["repeat"]) for s in stages]
    assert order == [
        ("a", 0, 0), ("a", 1, 0), ("b", 0, 0), ("b", 1, 0),
        ("a", 2, 1), ("a", 3, 1), ("b", 2, 1), ("b", 3, 1),
    ]  # fmt: skip
    assert all(s["completed"] for s in stages)
    records = lines(run_dir / "requests.jsonl")
    assert max(Counter(r["request_id"] for r in records).values()) == 1
    assert {(r["target"], r["stage"]) for r in records} == {(t, s) for t, s, _ in order}

    summary = pd.read_csv(run_dir / "summary.csv")
    columns = ["target", "stage", "repeat", "load"]
    got = sorted(tuple(row) for row in summary[columns].itertuples(index=False))
    assert got == [
        ("a", 0, 0, 2), ("a", 1, 0, 3), ("a", 2, 1, 2), ("a", 3, 1, 3),
        ("b", 0, 0, 2), ("b", 1, 0, 3), ("b", 2, 1, 2), ("b", 3, 1, 3),
    ]  # fmt: skip
    assert summary["valid"].all()
    report = (run_dir / "report.md").read_text()
    assert "repeats (spread)" in report  # the between-repeat spread, per target and load
    result = json.loads((run_dir / "result.json").read_text())
    assert result["config"]["repeats"] == 2
