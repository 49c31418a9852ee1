"""`repeats: 2` end to end on simulators: targets take turns (a, b, a, b) so drift hits both
alike, stage numbers run on across repeats, the report shows the spread between repeats, and
a run killed in the middle of a repeat resumes exactly where it stopped."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from quantbench.cli import main
from tests.procs import written_rows as lines
from tests.quantbench.killed_run import kill_run_when

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
analysis: {max_generator_cpu_percent: 100, max_loop_lag_p99_ms: 100}
"""


def test_two_repeats_interleave_and_resume_after_a_kill_inside_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bench.yaml"
    config.write_text(CONFIG)
    out = tmp_path / "runs"

    def inside_b_second_stage(run_dir: Path) -> bool:
        done = {(s["target"], s["stage"]) for s in lines(run_dir / "stages.jsonl")}
        in_b1 = [r for r in lines(run_dir / "requests.jsonl")
                 if r["target"] == "b" and r["stage"] == 1]  # fmt: skip
        return ("b", 0) in done and len(in_b1) >= 5

    run_dir = kill_run_when(config, out, inside_b_second_stage, "b's second stage")
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
