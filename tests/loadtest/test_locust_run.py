"""The run state a Locust process keeps: counts that end stages, windows written once each."""

from __future__ import annotations

import json
from pathlib import Path

from loadtest.config import LoadConfig, LocustSettings
from loadtest.locust_run import RunState
from loadtest.records import Outcome, RequestRecord


def record(stage: int, outcome: Outcome = Outcome.OK, warmup: bool = False) -> RequestRecord:
    return RequestRecord(target="t", stage=stage, mode="concurrency", load=1, outcome=outcome,
                         scheduled_ns=0, warmup=warmup)  # fmt: skip


def stage_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (path / "stages.jsonl").read_text().splitlines()]


def test_stage_windows_are_written_once_as_they_end(tmp_path: Path) -> None:
    settings = LocustSettings(
        run_dir=tmp_path, load=LoadConfig(stages=[1, 2, 3], warmup=1, stage_duration=4)
    )
    state = RunState(settings)
    state.open_stages()
    state.anchor.set(perf_s=100.0, wall_s=1_000.0, dispatchers=2)
    for stage, at in ((0, 2.0), (1, 6.0)):
        for _ in range(59):
            state.count(record(stage))
        assert state.plan.observe(at, state.stage_counts(stage)) is not None
    for run_time in (0.0, 4.9, 5.0, 5.1, 9.0):
        state.write_stages(run_time, completed=True)
    state.write_stages(12.5, completed=False)  # the test stopped inside the third stage
    state.write_stages(20.0, completed=False)  # nothing more to write
    stages = stage_lines(tmp_path)
    assert [(s["stage"], s["completed"], s["ended_by"]) for s in stages] == [
        (0, True, "duration"),
        (1, True, "duration"),
        (2, False, "stopped"),
    ]
    assert [(s["start_wall_s"], s["end_wall_s"]) for s in stages] == [
        (1000.0, 1005.0),
        (1005.0, 1010.0),
        (1010.0, 1012.5),
    ]
    assert stages[1]["start_ns"] == int(105.0 * 1e9) and stages[0]["warmup_s"] == 1.0
    assert (stages[0]["min_ok"], stages[0]["duration_s"], stages[0]["max_duration_s"]) == (
        59,
        4.0,
        600.0,
    )
    assert state.anchor.dispatchers == 2 and state.anchor.ready.is_set()


def test_warm_up_requests_do_not_count_and_failures_count_apart(tmp_path: Path) -> None:
    state = RunState(LocustSettings(run_dir=tmp_path))
    state.count(record(0, warmup=True))
    state.count(record(0))
    state.count(record(0, Outcome.HTTP_ERROR))
    counts = state.stage_counts(0)
    assert (counts.ok, counts.failed) == (1, 1)


def test_a_master_sums_its_workers_counts_and_workers_apply_its_endings(tmp_path: Path) -> None:
    load = LoadConfig(stages=[1, 2], warmup=0, stage_duration=1)
    master = RunState(LocustSettings(run_dir=tmp_path, load=load), lead_s=0.5)
    workers = [RunState(LocustSettings(run_dir=tmp_path, load=load)) for _ in range(2)]
    for worker, ok in zip(workers, (30, 29), strict=True):
        for _ in range(ok):
            worker.count(record(0))
    master.take_peer_counts("w0", workers[0].counts_message())
    assert master.plan.observe(2.0, master.stage_counts(0)) is None  # 30 of 59
    master.take_peer_counts("w1", workers[1].counts_message())
    master.take_peer_counts("w0", workers[0].counts_message())  # a repeat adds nothing
    assert master.stage_counts(0).ok == 59
    ended = master.plan.observe(2.0, master.stage_counts(0))
    assert ended is not None and ended.end_s == 2.5  # ahead of time, for the workers
    woken = workers[0].decided
    workers[0].take_endings(json.loads(json.dumps(master.endings_message())))
    assert woken.is_set(), "a dispatcher waiting for its next arrival hears of the ending"
    running = workers[0].plan.stage_at(2.5)
    assert running is not None and running.index == 1
