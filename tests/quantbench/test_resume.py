"""A run killed with SIGKILL mid-stage and resumed has every request once and none lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from quantbench.cli import main
from tests.procs import REPO_ROOT

pytestmark = pytest.mark.slow

CONFIG = """
name: resumable
targets:
  - name: sim
    sim: {timing: fixed, ttft_ms: 5, itl_ms: 2}
workload: {prompt_tokens: 8, output_tokens: 4}
load: {stages: [2, 3, 2], warmup: 0.5s, stage_duration: 2s}
"""


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_sigkill_mid_stage_then_resume(tmp_path: Path) -> None:
    config = tmp_path / "bench.yaml"
    config.write_text(CONFIG)
    out = tmp_path / "runs"
    proc = subprocess.Popen(
        [sys.executable, "-m", "quantbench", "run", str(config), "--out", str(out)],
        cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    run_dir = None
    while time.monotonic() < deadline:
        runs = list(out.iterdir()) if out.exists() else []
        if runs:
            run_dir = runs[0]
            in_stage_1 = [r for r in lines(run_dir / "requests.jsonl") if r["stage"] == 1]
            stage_0_done = any(s["stage"] == 0 for s in lines(run_dir / "stages.jsonl"))
            if stage_0_done and len(in_stage_1) >= 5:
                break
        time.sleep(0.05)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("the run never reached its second stage")
    os.killpg(proc.pid, signal.SIGKILL)  # quantbench, Locust and the simulator, mid-stage
    proc.wait()
    assert run_dir is not None
    before = {r["request_id"]: r for r in lines(run_dir / "requests.jsonl") if r["stage"] == 0}
    assert before

    assert main(["run", "--resume", str(run_dir)]) == 0

    after = lines(run_dir / "requests.jsonl")
    ids = Counter(r["request_id"] for r in after)
    assert max(ids.values()) == 1, "a request recorded twice"
    kept = {r["request_id"]: r for r in after if r["stage"] == 0}
    assert kept == before, "stage 0 finished before the kill and must be kept exactly"
    assert {r["stage"] for r in after} == {0, 1, 2}
    journal = {e["request_id"] for e in lines(run_dir / "scheduled.jsonl")}
    assert journal == set(ids), "every request sent has exactly one record"
    stages = lines(run_dir / "stages.jsonl")
    assert sorted((s["stage"], s["completed"]) for s in stages) == [(0, True), (1, True), (2, True)]
    discarded = lines(run_dir / "requests.discarded.jsonl")
    assert discarded and {r["stage"] for r in discarded} == {1}
    assert not set(r["request_id"] for r in discarded) & set(ids)
    assert "resumed_at" in json.loads((run_dir / "run.json").read_text())
