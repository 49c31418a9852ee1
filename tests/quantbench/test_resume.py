"""A run killed with SIGKILL mid-stage and resumed has every request once and none lost, and
looks like an uninterrupted run of the same config except for the note of the resume."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from quantbench.cli import main
from tests.procs import written_rows as lines
from tests.quantbench.killed_run import kill_run_when

pytestmark = pytest.mark.slow

CONFIG = """
name: resumable
targets:
  - name: sim
    sim: {timing: fixed, ttft_ms: 5, itl_ms: 2}
workload: {prompt_tokens: 8, output_tokens: 4}
load: {stages: [2, 3, 2], warmup: 0.5s, stage_duration: 2s}
analysis: {max_generator_cpu_percent: 100, max_loop_lag_p99_ms: 100}  # a busy host voids none
"""


def comparable(run_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """What must not differ between a resumed and an uninterrupted run: each target as
    run.json records it (less its times and port), and summary.csv's identifying columns."""
    meta = json.loads((run_dir / "run.json").read_text())
    varying = {"started_at", "ended_at", "metrics_url", "telemetry"}  # its URL and sample count
    targets = [{k: v for k, v in t.items() if k not in varying} for t in meta["targets"]]
    summary = pd.read_csv(run_dir / "summary.csv")
    rows = summary[["target", "stack", "quant", "simulated", "stage", "mode", "load"]]
    return targets, rows.to_dict("records")


def test_sigkill_mid_stage_then_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bench.yaml"
    config.write_text(CONFIG)
    out = tmp_path / "runs"

    def in_stage_1(run_dir: Path) -> bool:
        in_stage_1 = [r for r in lines(run_dir / "requests.jsonl") if r["stage"] == 1]
        stage_0_done = any(s["stage"] == 0 for s in lines(run_dir / "stages.jsonl"))
        return stage_0_done and len(in_stage_1) >= 5

    run_dir = kill_run_when(config, out, in_stage_1, "its second stage")
    before = {r["request_id"]: r for r in lines(run_dir / "requests.jsonl") if r["stage"] == 0}
    assert before
    capsys.readouterr()
    assert main(["run", "--resume", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "resuming: sim from stage 2 of 3 (" in out, out

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
    resumed = json.loads((run_dir / "run.json").read_text())
    assert len(resumed["resumed_at"]) == 1 and resumed["interrupted"] is None

    uninterrupted = tmp_path / "whole"
    assert main(["run", str(config), "--out", str(uninterrupted)]) == 0
    (whole,) = uninterrupted.iterdir()
    assert comparable(run_dir) == comparable(whole)
    assert comparable(run_dir)[0][0]["stack"] == "vllm" and comparable(run_dir)[0][0]["simulated"]
    for name in ("server_stages.csv", "report.html"):  # the server-side section too
        assert (run_dir / name).exists() and (whole / name).exists(), name
    report = (run_dir / "report.md").read_text()
    assert "resumed" in report and "*simulated*" in report


def test_unfinished_stages_and_damaged_lines_are_set_aside(tmp_path: Path) -> None:
    from quantbench.resume import finished_stages, set_aside_unfinished

    (tmp_path / "stages.jsonl").write_text(
        '{"target": "a", "stage": 0, "completed": true}\n'
        '{"target": "a", "stage": 1, "completed": true}\n'
    )
    (tmp_path / "scheduled.jsonl").write_text(
        '{"target": "a", "stage": 0, "request_id": "r1"}\n'
        '{"target": "a", "stage": 1, "request_id": "r2"}\n'
        '{"target": "a", "stage": 1, "request_id": "lost"}\n'
    )
    (tmp_path / "requests.jsonl").write_bytes(
        b'{"target": "a", "stage": 0, "request_id": "r1"}\n'
        b"garbage\n"
        b'{"target": "a", "stage": 1, "request_id": "r2"}\n'
        b'{"target": "a", "stage": 1, "requ'  # the killed writer's partial last line
    )
    finished = finished_stages(tmp_path, {"a": 2})
    assert finished == {"a": 1}, "stage 1 lost a request in flight: it runs again"
    assert set_aside_unfinished(tmp_path, finished) == 3
    assert lines(tmp_path / "requests.jsonl") == [{"target": "a", "stage": 0, "request_id": "r1"}]
    aside = (tmp_path / "requests.discarded.jsonl").read_bytes().splitlines()
    assert aside[0] == b"garbage" and aside[-1].endswith(b'"requ')
    assert [s["stage"] for s in lines(tmp_path / "stages.jsonl")] == [0]
