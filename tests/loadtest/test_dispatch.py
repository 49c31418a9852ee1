"""The dispatch plan as a pure generator with a scripted clock, like LoadPlan."""

from __future__ import annotations

import itertools
import time

import pytest

from loadtest.arrivals import arrival_times
from loadtest.config import LoadConfig
from loadtest.dispatch import AwaitRound, Launch, connect_backoff_s, dispatch_plan
from loadtest.records import Outcome
from loadtest.shapes import LoadPlan


def test_dispatchers_split_one_global_schedule_and_send_each_arrival_once() -> None:
    load = LoadConfig(mode="rate", stages=[40, 80], warmup=0.5, stage_duration=2, arrival="poisson")
    plan = LoadPlan(load)
    shares = [
        [s for s in dispatch_plan(plan, load, 7, lambda: 0.0, slot, 3) if isinstance(s, Launch)]
        for slot in range(3)
    ]
    merged = sorted((s.stage.index, s.index, s.at_s) for share in shares for s in share)
    expected = [
        (stage.index, i, at_s)
        for stage in plan.stages
        for i, at_s in enumerate(
            arrival_times(stage.load, stage.start_s, stage.end_s, "poisson", f"7:{stage.index}")
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
    steps = list(dispatch_plan(LoadPlan(load, first_stage=2), load, 0, lambda: 0.0))
    assert {s.stage.index for s in steps} == {2}
    assert [s.at_s for s in steps] == pytest.approx([i / 20 for i in range(20)])


def test_an_absurd_rate_costs_no_memory_until_drawn() -> None:
    load = LoadConfig(mode="rate", stages=[1e9], stage_duration=30, allow_overload=True)
    started = time.perf_counter()
    first = list(itertools.islice(dispatch_plan(LoadPlan(load), load, 0, lambda: 0.0), 5))
    assert len(first) == 5 and time.perf_counter() - started < 5  # no 3e10-element schedule
    assert all(isinstance(s, Launch) and s.at_s < 1e-6 for s in first)


class ScriptedClock:
    """Run time that advances only when a round has been waited for."""

    def __init__(self, round_s: float) -> None:
        self.now_s = 0.0
        self.round_s = round_s

    def __call__(self) -> float:
        return self.now_s


def test_batch_rounds_start_together_and_follow_each_other_until_the_stage_ends() -> None:
    load = LoadConfig(mode="batch", stages=[3, 2], warmup=1, stage_duration=4)
    clock = ScriptedClock(round_s=1.5)
    steps = []
    for step in dispatch_plan(LoadPlan(load), load, 0, clock):
        steps.append(step)
        if isinstance(step, AwaitRound):
            clock.now_s = max(clock.now_s, step.stage.start_s) + clock.round_s  # the round ran
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
    first = next(dispatch_plan(LoadPlan(load, first_stage=0), load, 0, lambda: -0.5))
    assert isinstance(first, Launch) and first.at_s == 0.0


def test_closed_loop_users_back_off_only_after_failed_connections() -> None:
    waits = []
    backoff = 0.0
    for outcome in [Outcome.CONNECT_ERROR] * 7 + [Outcome.HTTP_ERROR, Outcome.TIMEOUT_CONNECT]:
        backoff = connect_backoff_s(backoff, outcome)
        waits.append(backoff)
    assert waits == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 0.0, 0.05]
    assert connect_backoff_s(0.4, Outcome.OK) == 0.0
