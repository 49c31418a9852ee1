"""The dispatch plan as a pure generator with a scripted clock, like LoadPlan."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import pytest

from loadtest.arrivals import arrival_times
from loadtest.config import LoadConfig
from loadtest.dispatch import AwaitRound, Launch, Wait, connect_backoff_s, dispatch_plan
from loadtest.records import Outcome
from loadtest.shapes import Counts, LoadPlan


class SimClock:
    """The run time of a simulated dispatcher: a `Wait` moves it on; `plan` is told the
    counts at each step (`ok_per_s` ok requests per second of the measured window)."""

    def __init__(self, plan: LoadPlan, ok_per_s: float) -> None:
        self.now_s = 0.0
        self.plan = plan
        self.ok_per_s = ok_per_s

    def __call__(self) -> float:
        return self.now_s

    def run(self, steps: Iterator[Launch | Wait | AwaitRound], round_s: float = 0.0) -> list:
        out = []
        for step in steps:
            if isinstance(step, Wait):
                self.now_s = max(self.now_s, step.until_s)
            elif isinstance(step, AwaitRound):
                self.now_s += round_s
            out.append(step)
            stage = self.plan.stage_at(self.now_s)
            if stage is not None:
                measured = max(self.now_s - stage.measure_start_s, 0.0)
                self.plan.observe(self.now_s, Counts(ok=int(measured * self.ok_per_s)))
        return out


def launches(steps: list) -> list[Launch]:
    return [s for s in steps if isinstance(s, Launch)]


def test_dispatchers_split_one_global_schedule_and_send_each_arrival_once() -> None:
    load = LoadConfig(mode="rate", stages=[40, 80], warmup=0.5, stage_duration=2, arrival="poisson")
    shares = []
    for slot in range(3):
        plan = LoadPlan(load)
        clock = SimClock(plan, ok_per_s=100.0)  # enough samples: the stages end on time
        shares.append(launches(clock.run(dispatch_plan(plan, load, 7, clock, slot, 3))))
    merged = sorted((s.stage.index, s.index, s.at_s) for share in shares for s in share)
    windows = [(0, 0.0, 2.5), (1, 2.5, 5.0)]
    expected = [
        (index, i, at_s)
        for index, start, end in windows
        for i, at_s in enumerate(
            arrival_times(load.stages[index], start, end, "poisson", f"7:{index}")
        )
    ]
    assert merged == expected
    for slot, share in enumerate(shares):
        assert all(s.index % 3 == slot for s in share)
        assert [s.at_s for s in share] == sorted(s.at_s for s in share)  # in schedule order


def test_a_resumed_rate_plan_starts_with_its_first_unfinished_stage() -> None:
    load = LoadConfig(
        mode="rate", stages=[5, 10, 20], warmup=0, stage_duration=1, arrival="constant"
    )
    plan = LoadPlan(load, first_stage=2)
    clock = SimClock(plan, ok_per_s=100.0)
    steps = launches(clock.run(dispatch_plan(plan, load, 0, clock)))
    assert {s.stage.index for s in steps} == {2}
    assert [s.at_s for s in steps] == pytest.approx([i / 20 for i in range(20)])


def test_an_open_loop_stage_short_of_samples_sends_on_the_same_schedule_until_it_has_them() -> None:
    """10 req/s for 2 s gives 20 samples; 59 are needed: the stage runs on, on the same
    seeded schedule, until the 59th ok request (~5.9 s), and the next starts there."""
    load = LoadConfig(mode="rate", stages=[10, 40], warmup=0, stage_duration=2,
                      arrival="constant")  # fmt: skip
    plan = LoadPlan(load)
    clock = SimClock(plan, ok_per_s=10.0)
    steps = launches(clock.run(dispatch_plan(plan, load, 0, clock)))
    first = [s for s in steps if s.stage.index == 0]
    assert [s.at_s for s in first] == pytest.approx([i / 10 for i in range(len(first))])
    (ended, _) = plan.ended(1e9)
    assert ended.ended_by == "samples" and ended.end_s == pytest.approx(5.9)
    assert len(first) == 59  # arrivals at 0.0 … 5.8 s; the next stage starts at 5.9 s
    second = [s for s in steps if s.stage.index == 1]
    assert second[0].at_s == pytest.approx(5.9) and second[0].stage.start_s == ended.end_s


def test_an_open_loop_stage_stops_at_its_cap_without_its_samples() -> None:
    load = LoadConfig(mode="rate", stages=[1], warmup=0, stage_duration=2, max_stage_duration=4,
                      arrival="constant")  # fmt: skip
    plan = LoadPlan(load)
    clock = SimClock(plan, ok_per_s=1.0)
    steps = launches(clock.run(dispatch_plan(plan, load, 0, clock)))
    assert [s.at_s for s in steps] == [0.0, 1.0, 2.0, 3.0]
    (ended,) = plan.ended(1e9)
    assert (ended.end_s, ended.ended_by) == (4.0, "cap")


def test_an_absurd_rate_costs_no_memory_until_drawn() -> None:
    load = LoadConfig(mode="rate", stages=[1e9], stage_duration=30, allow_overload=True,
                      warmup=0)  # fmt: skip
    started = time.perf_counter()
    first = list(itertools.islice(dispatch_plan(LoadPlan(load), load, 0, lambda: 1e-6), 5))
    assert len(first) == 5 and time.perf_counter() - started < 5  # no 3e10-element schedule
    assert all(isinstance(s, Launch) and s.at_s < 1e-6 for s in first)


def test_batch_rounds_start_together_and_follow_each_other_until_the_stage_ends() -> None:
    load = LoadConfig(mode="batch", stages=[3, 2], warmup=1, stage_duration=4)
    plan = LoadPlan(load)
    clock = SimClock(plan, ok_per_s=100.0)
    steps = [s for s in clock.run(dispatch_plan(plan, load, 0, clock), round_s=1.5)
             if not isinstance(s, Wait)]  # fmt: skip
    rounds: list[list[Launch]] = [[]]
    for step in steps:
        if isinstance(step, AwaitRound):
            rounds.append([])
        else:
            rounds[-1].append(step)
    rounds.pop()  # nothing after the last AwaitRound
    # Stage 0 (0-5 s): rounds at 0, 1.5, 3.0, 4.5; stage 1 (5-10 s) at 6.0 (the clock is
    # past its start when the last round of stage 0 ended), 7.5, 9.0.
    assert [(r[0].stage.index, r[0].at_s, len(r)) for r in rounds] == [
        (0, 0.0, 3), (0, 1.5, 3), (0, 3.0, 3), (0, 4.5, 3),
        (1, 6.0, 2), (1, 7.5, 2), (1, 9.0, 2),
    ]  # fmt: skip
    assert all(len({s.at_s for s in r}) == 1 for r in rounds), "a round is released together"
    assert [s.index for s in rounds[1]] == [3, 4, 5]  # numbered across the stage's rounds


def test_a_batch_stage_waits_for_its_start() -> None:
    load = LoadConfig(mode="batch", stages=[2], warmup=2, stage_duration=1)
    steps = dispatch_plan(LoadPlan(load, first_stage=0), load, 0, lambda: -0.5)
    assert next(steps) == Wait(0.0)


def test_batch_dispatchers_split_each_round() -> None:
    load = LoadConfig(mode="batch", stages=[5], warmup=0, stage_duration=1)
    indexes = []
    for slot in range(2):
        plan = LoadPlan(load)
        clock = SimClock(plan, ok_per_s=100.0)
        steps = clock.run(dispatch_plan(plan, load, 0, clock, slot, 2), round_s=2.0)
        indexes.append([s.index for s in launches(steps)])
    assert indexes == [[0, 2, 4], [1, 3]]  # one round of 5 in all, not 5 per dispatcher


def test_closed_loop_users_back_off_only_after_failed_connections() -> None:
    waits = []
    backoff = 0.0
    for outcome in [Outcome.CONNECT_ERROR] * 7 + [Outcome.HTTP_ERROR, Outcome.TIMEOUT_CONNECT]:
        backoff = connect_backoff_s(backoff, outcome)
        waits.append(backoff)
    assert waits == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 0.0, 0.05]
    assert connect_backoff_s(0.4, Outcome.OK) == 0.0
