"""Load profiles as pure functions of run time, testable without Locust.

Each stage runs `warmup` seconds (records flagged and excluded from statistics) followed by
`stage_duration` seconds of measurement. Closed loop holds `load` users; open loop (rate)
and batch stages are driven by one dispatcher user per process.
"""

from __future__ import annotations

from dataclasses import dataclass

from loadtest.config import LoadConfig

__all__ = ["LoadPlan", "StagePlan"]


@dataclass(frozen=True)
class StagePlan:
    index: int
    load: float
    start_s: float
    measure_start_s: float
    end_s: float

    @property
    def users(self) -> int:
        return int(self.load)


class LoadPlan:
    """The stages of one target's run, laid end to end from time 0."""

    def __init__(self, load: LoadConfig, first_stage: int = 0) -> None:
        """`first_stage` > 0 resumes a run: earlier stages are done and are skipped."""
        self.mode = load.mode
        span = load.warmup + load.stage_duration
        self.stages = [
            StagePlan(i, float(value), k * span, k * span + load.warmup, (k + 1) * span)
            for k, (i, value) in enumerate(list(enumerate(load.stages))[first_stage:])
        ]
        self.total_s = span * len(self.stages)

    def stage_at(self, run_time_s: float) -> StagePlan | None:
        """The stage running at `run_time_s`, or None once the profile has ended."""
        if run_time_s < 0:
            return self.stages[0]
        for stage in self.stages:
            if run_time_s < stage.end_s:
                return stage
        return None

    def tick(self, run_time_s: float) -> tuple[int, float] | None:
        """Locust's shape contract: (users, spawn rate), or None to stop the test."""
        stage = self.stage_at(run_time_s)
        if stage is None:
            return None
        if self.mode != "concurrency":
            return 1, 1.0  # one dispatcher sends on the schedule
        # Ramp the users up over the warm-up: users started together with equal output
        # lengths would stay in lock-step for the whole stage, every request ending at once.
        warmup_s = stage.measure_start_s - stage.start_s
        rate = stage.users / warmup_s if warmup_s > 0 else stage.users * 10.0
        return stage.users, float(max(rate, 1.0))
