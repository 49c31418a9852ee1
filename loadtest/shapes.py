"""Load profiles as pure functions of run time and observed counts, testable without Locust.

Each stage runs `warmup` seconds (records flagged and excluded from statistics), then is
measured for at least `stage_duration` seconds *and* until it holds the ok samples its
percentiles need (`SampleGoal.min_ok`: 59 for a p95), up to `max_stage_duration` — MLPerf
LoadGen's rule that a run lasts its minimum duration *and* its minimum query count
(mlcommons/inference, loadgen/test_settings.h: `min_duration_ms`, `min_query_count`).
A stage whose error rate is above the goal's limit is not extended: it is invalid on its
errors whatever its count, and more samples would only cost time.

How a stage ends is decided by `StageRule.decide` over what has been observed (`Counts`);
a later mode (search, sweep, replay) supplies its own rule. Until a stage's end is decided
the stage runs on (its cap ends it without a decision). `lead_s` lets a master decide an end
that far ahead, so that generator processes hear of it before it passes. Closed loop holds
`load` users; open loop (rate), batch and replay stages are driven by one dispatcher user per
process. A replay stage's length is fixed in advance (`stage_lengths_s`: the trace's span at
its multiplier): it ends when its trace does, decided from the start, its warm-up the first
seconds of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from loadtest.config import LoadConfig, SampleGoal, StageMode
from loadtest.slo_counts import Limit, judge
from loadtest.slo_counts import Tally as Counts

__all__ = [
    "Counts",
    "EndedBy",
    "Ending",
    "LoadPlan",
    "SampledStage",
    "SloStage",
    "StagePlan",
    "StageRule",
]

EndedBy = Literal["duration", "samples", "cap", "errors", "slo"]
# `Counts`: what a stage has produced so far, its measured (post-warm-up) requests that
# ended: ok, failed, and per SLO objective the values seen and over the limit
# (`loadtest.slo_counts.Tally`).


@dataclass(frozen=True)
class Ending:
    end_s: float
    by: EndedBy


@dataclass(frozen=True)
class StagePlan:
    """One stage laid on the run's clock. `index` numbers the target's stages uniquely
    across repeats; `end_s` is None while the stage runs on (not yet decided)."""

    index: int
    load: float
    start_s: float
    measure_start_s: float
    min_end_s: float  # the measured `stage_duration` has passed
    cap_end_s: float  # `max_stage_duration` has passed: the stage ends whatever its count
    repeat: int = 0
    end_s: float | None = None
    ended_by: EndedBy | None = None

    @property
    def users(self) -> int:
        return int(self.load)

    @property
    def latest_end_s(self) -> float:
        return self.cap_end_s if self.end_s is None else self.end_s


class StageRule:
    """Decides, from a stage and its counts at run time `now_s`, whether it ends and when
    (at or after `earliest_s`, which is `now_s` plus the plan's lead); None: runs on."""

    def decide(
        self, stage: StagePlan, counts: Counts, now_s: float, earliest_s: float
    ) -> Ending | None:
        raise NotImplementedError


@dataclass(frozen=True)
class SampledStage(StageRule):
    """At least the stage's duration and until `goal.min_ok` ok samples; not extended past
    its duration while its error rate is above `goal.max_error_rate`."""

    goal: SampleGoal = field(default_factory=SampleGoal)

    def decide(
        self, stage: StagePlan, counts: Counts, now_s: float, earliest_s: float
    ) -> Ending | None:
        end_s = max(stage.min_end_s, earliest_s)
        if end_s >= stage.cap_end_s:
            return None  # the cap ends it
        if counts.ok >= self.goal.min_ok:
            return Ending(end_s, "duration" if end_s == stage.min_end_s else "samples")
        done = counts.ok + counts.failed
        too_many_errors = done and counts.failed > self.goal.max_error_rate * done
        if too_many_errors and earliest_s >= stage.min_end_s:
            return Ending(end_s, "errors")
        return None


@dataclass(frozen=True)
class SloStage(SampledStage):
    """A search's stage: as `SampledStage`, but ended as soon as its counts decide the SLO
    (`loadtest.slo_counts.judge`, early): clearly broken at once — an overloaded target's
    queue only grows — and clearly met once half its duration has passed, so that a queue
    still building at its start has had time to show."""

    limits: tuple[Limit, ...] = ()

    def decide(
        self, stage: StagePlan, counts: Counts, now_s: float, earliest_s: float
    ) -> Ending | None:
        verdict = judge(counts, self.limits, self.goal.max_error_rate, early=True)
        halfway = stage.measure_start_s + (stage.min_end_s - stage.measure_start_s) / 2
        if verdict == "broken" or (verdict == "met" and earliest_s >= halfway):
            end_s = min(earliest_s, stage.cap_end_s)
            if end_s < stage.min_end_s:
                return Ending(end_s, "slo")
        if earliest_s < stage.min_end_s:
            return None  # still open to an early verdict (its duration is asked again later)
        return super().decide(stage, counts, now_s, earliest_s)


class LoadPlan:
    """The stages of one target's run (one repeat of its sweep), laid end to end from time 0.

    Pure: what it answers depends only on the run time it is asked about and the endings
    decided so far (`observe` from counts, or `end_stage` with a decision made elsewhere).
    """

    def __init__(
        self,
        load: LoadConfig,
        first_stage: int = 0,
        *,
        rule: StageRule | None = None,
        stage_offset: int = 0,
        repeat: int = 0,
        lead_s: float = 0.0,
        stage_lengths_s: Sequence[float] | None = None,
    ) -> None:
        """`first_stage` > 0 resumes a run: earlier stages are done and are skipped.
        Stage numbers start at `stage_offset` (a repeat's stages follow the previous ones).
        `stage_lengths_s`: each configured stage's whole length (warm-up included) when it
        is fixed in advance, as a replay's is; such a stage is never extended."""
        if load.mode == "search" or load.mode == "sweep":
            raise ValueError(f"{load.mode} stages are chosen by quantbench run as it goes")
        self.mode: StageMode = load.mode
        self.rule = rule or SampledStage()
        self.lead_s = lead_s
        self.repeat = repeat
        self._warmup_s = load.warmup
        self._min_s = load.stage_duration
        self._cap_s = load.stage_cap_s
        self._loads = [(stage_offset + i, float(value)) for i, value in enumerate(load.stages)][
            first_stage:
        ]
        if stage_lengths_s is not None and len(stage_lengths_s) != len(load.stages):
            raise ValueError(f"{len(stage_lengths_s)} stage lengths for {len(load.stages)} stages")
        self._lengths = list(stage_lengths_s)[first_stage:] if stage_lengths_s else None
        self._endings: dict[int, Ending] = {}

    @property
    def stage_count(self) -> int:
        return len(self._loads)

    def _laid(self, position: int, start_s: float) -> StagePlan:
        index, value = self._loads[position]
        if self._lengths is not None:
            return self._fixed(position, start_s)
        measure_s = start_s + self._warmup_s
        ending = self._endings.get(index)
        return StagePlan(
            index=index,
            load=value,
            start_s=start_s,
            measure_start_s=measure_s,
            min_end_s=measure_s + self._min_s,
            cap_end_s=measure_s + self._cap_s,
            repeat=self.repeat,
            end_s=None if ending is None else ending.end_s,
            ended_by=None if ending is None else ending.by,
        )

    def _fixed(self, position: int, start_s: float) -> StagePlan:
        """A stage of fixed length: measured after its warm-up, ended by its duration."""
        assert self._lengths is not None
        index, value = self._loads[position]
        end_s = start_s + self._lengths[position]
        return StagePlan(
            index=index,
            load=value,
            start_s=start_s,
            measure_start_s=min(start_s + self._warmup_s, end_s),
            min_end_s=end_s,
            cap_end_s=end_s,
            repeat=self.repeat,
            end_s=end_s,
            ended_by="duration",
        )

    def _walk(self, run_time_s: float) -> tuple[list[StagePlan], StagePlan | None]:
        """The stages ended by `run_time_s` (each with its end) and the one running then."""
        ended: list[StagePlan] = []
        start_s = 0.0
        for position in range(len(self._loads)):
            stage = self._laid(position, start_s)
            if stage.end_s is None and run_time_s >= stage.cap_end_s:
                stage = replace(stage, end_s=stage.cap_end_s, ended_by="cap")
            if stage.end_s is None or run_time_s < stage.end_s:
                return ended, stage
            ended.append(stage)
            start_s = stage.end_s
        return ended, None

    def stage_at(self, run_time_s: float) -> StagePlan | None:
        """The stage running at `run_time_s`, or None once the profile has ended."""
        return self._walk(max(run_time_s, 0.0))[1]

    def ended(self, run_time_s: float) -> list[StagePlan]:
        """Every stage that ended by `run_time_s`, in order, with its end and why."""
        return self._walk(run_time_s)[0]

    def following(self, stage: StagePlan) -> StagePlan | None:
        """The stage after `stage`, starting where it ended (as decided, or at its cap)."""
        ending = self._endings.get(stage.index)
        return self.stage_at(stage.cap_end_s if ending is None else ending.end_s)

    def finished_at(self, run_time_s: float) -> float | None:
        """When the last stage ended, once it has by `run_time_s`; else None."""
        ended, running = self._walk(run_time_s)
        return ended[-1].end_s if running is None and ended else None

    def observe(self, run_time_s: float, counts: Counts) -> StagePlan | None:
        """Counts of the stage running at `run_time_s`; returns it, ended, when they end it."""
        stage = self.stage_at(run_time_s)
        if stage is None or stage.end_s is not None:
            return None
        ending = self.rule.decide(stage, counts, run_time_s, run_time_s + self.lead_s)
        if ending is None:
            return None
        self._endings[stage.index] = ending
        return replace(stage, end_s=ending.end_s, ended_by=ending.by)

    def end_stage(self, index: int, end_s: float, by: EndedBy) -> None:
        """Apply an ending decided elsewhere (a worker hears its master's decisions)."""
        self._endings.setdefault(index, Ending(end_s, by))

    def endings(self) -> dict[int, Ending]:
        return dict(self._endings)

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
