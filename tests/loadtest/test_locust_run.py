"""The run state a Locust process keeps: stage windows written once each, as they end."""

from __future__ import annotations

import json
from pathlib import Path

from loadtest.config import LoadConfig, LocustSettings
from loadtest.locust_run import RunState


def test_stage_windows_are_written_once_as_they_end(tmp_path: Path) -> None:
    settings = LocustSettings(
        run_dir=tmp_path, load=LoadConfig(stages=[1, 2, 3], warmup=1, stage_duration=4)
    )
    state = RunState(settings)
    state.open_stages()
    state.anchor.set(perf_s=100.0, wall_s=1_000.0, dispatchers=2)
    for run_time in (0.0, 4.9, 5.0, 5.1, 9.0):
        state.write_stages(run_time, completed=True)
    state.write_stages(12.5, completed=False)  # the test stopped inside the third stage
    state.write_stages(20.0, completed=False)  # nothing more to write
    stages = [json.loads(line) for line in (tmp_path / "stages.jsonl").read_text().splitlines()]
    assert [(s["stage"], s["completed"]) for s in stages] == [(0, True), (1, True), (2, False)]
    assert [(s["start_wall_s"], s["end_wall_s"]) for s in stages] == [
        (1000.0, 1005.0),
        (1005.0, 1010.0),
        (1010.0, 1012.5),
    ]
    assert stages[1]["start_ns"] == int(105.0 * 1e9) and stages[0]["warmup_s"] == 1.0
    assert state.anchor.dispatchers == 2 and state.anchor.ready.is_set()
