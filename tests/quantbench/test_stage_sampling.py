"""Stages sample enough by construction (issue 12.2): a short stage runs on until it has the
ok samples its p95 needs; one that cannot get them stops at its cap and is invalid, saying so.
Checked on the records and the stage windows, never on how late a timer fired."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from quantbench.cli import main

pytestmark = pytest.mark.slow


def run(tmp_path: Path, sim: dict[str, Any], load: str, *, exit_code: int) -> Path:
    config = tmp_path / "bench.yaml"
    config.write_text(
        "name: sampling\ntargets:\n"
        f"  - name: sim\n    sim: {json.dumps(sim)}\n"
        "workload: {endpoint: completions, prompt_tokens: 8, output_tokens: 4}\n"
        f"load: {load}\n"
        "analysis: {max_generator_cpu_percent: 100, max_loop_lag_p99_ms: 100}\n"  # busy host: valid
    )
    out = tmp_path / "runs"
    assert main(["run", str(config), "--out", str(out)]) == exit_code
    (run_dir,) = out.iterdir()
    return run_dir


def rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_short_stage_is_extended_until_its_59th_sample(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # One user, ~55 ms a request: about 18 samples in the 1 s asked for, 59 needed.
    sim = {"timing": "fixed", "ttft_ms": 40, "itl_ms": 5}
    run_dir = run(tmp_path, sim, "{stages: [1, 2], warmup: 0.2s, stage_duration: 1s}",
                  exit_code=0)  # fmt: skip
    first, second = rows(run_dir / "stages.jsonl")
    assert (first["ended_by"], first["min_ok"], first["duration_s"]) == ("samples", 59, 1.0)
    measured = [r for r in rows(run_dir / "requests.jsonl") if r["stage"] == 0 and not r["warmup"]]
    # One user sends its next request only after its last ended, and the stage ends the
    # moment the 59th ok record is written: exactly 59 requests, all inside the window.
    assert len(measured) == 59 and all(r["outcome"] == "ok" for r in measured)
    last_end = max(r["end_ns"] for r in measured)
    assert first["end_ns"] >= last_end
    measure_start = first["start_ns"] + first["warmup_s"] * 1e9
    assert all(measure_start <= r["scheduled_ns"] < first["end_ns"] for r in measured)
    # The simulator takes at least 40 + 3 × 5 ms per request, so 59 of them outlast 1 s.
    assert (first["end_ns"] - measure_start) / 1e9 >= 59 * 0.055 > 1.0
    assert second["start_ns"] == first["end_ns"]
    summary = pd.read_csv(run_dir / "summary.csv")
    assert summary["ok"].iloc[0] == 59 and bool(summary["valid"].iloc[0])
    window_s = (first["end_ns"] - measure_start) / 1e9
    assert summary["duration_s"].iloc[0] == pytest.approx(window_s, abs=1e-3)
    out = capsys.readouterr().out
    assert "sim: stage 1 (1 user) will run ~" in out  # said before the stage ran


def test_a_stage_that_cannot_reach_its_count_stops_at_the_cap_and_is_invalid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sim = {"timing": "fixed", "ttft_ms": 300, "itl_ms": 5}  # ~3 requests a second
    load = "{stages: [1], warmup: 0s, stage_duration: 1s, max_stage_duration: 1.5s}"
    run_dir = run(tmp_path, sim, load, exit_code=2)  # its only stage: the run cannot answer
    (stage,) = rows(run_dir / "stages.jsonl")
    assert stage["ended_by"] == "cap"
    assert stage["end_ns"] - stage["start_ns"] == pytest.approx(1.5e9, abs=1e3)  # the plan's
    row = pd.read_csv(run_dir / "summary.csv").iloc[0]
    assert not row["valid"]
    assert "p95 needs 59 (not reached within load.max_stage_duration, 1.5 s)" in str(
        row["invalid_reason"]
    )
    captured = capsys.readouterr()
    assert "stage 1 (1 user) cannot plausibly collect the 59 ok samples a p95 needs" in (
        captured.out
    )
    assert "target sim: no valid stage" in captured.err
