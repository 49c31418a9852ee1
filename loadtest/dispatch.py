"""What an open-loop or batch dispatcher sends, and when: a pure generator, testable with a
fake clock like `LoadPlan`, that the Locust adapter only executes.

Open loop (`rate`): every arrival of the one seeded global schedule of each stage, keeping
those whose index falls to this dispatcher (`index % dispatchers == slot`), so N generator
processes share one schedule and send each arrival once. Arrivals are drawn lazily up to the
stage's cap (the plan's memory does not grow with the rate); before each of its own the
dispatcher waits until that instant (`Wait`), then asks the plan whether the stage is still
running then — its end is decided from counts (`loadtest.shapes`), so only the clock can
tell. The schedule inside `stage_duration` is the same whether or not the stage is extended.

Batch: at the stage's start, `load` requests together (split across dispatchers), then
`AwaitRound` (the executor waits until every one has ended), then the next round at the time
the clock then says, while the stage is running then.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from loadtest.arrivals import iter_arrivals
from loadtest.config import LoadConfig
from loadtest.records import Outcome
from loadtest.shapes import LoadPlan, StagePlan

__all__ = ["AwaitRound", "Launch", "Wait", "connect_backoff_s", "dispatch_plan"]

_BACKOFF_FIRST_S = 0.05
_BACKOFF_MAX_S = 1.0
_CONNECTION_LOST = frozenset({Outcome.CONNECT_ERROR, Outcome.TIMEOUT_CONNECT})


@dataclass(frozen=True)
class Launch:
    """Send one request of `stage`, number `index` in it, scheduled at run time `at_s`."""

    stage: StagePlan
    index: int
    at_s: float


@dataclass(frozen=True)
class Wait:
    """Sleep until run time `until_s` before asking for the next step."""

    until_s: float


@dataclass(frozen=True)
class AwaitRound:
    """Batch: wait until every request launched so far has ended."""

    stage: StagePlan


def _same(stage: StagePlan | None, other: StagePlan) -> bool:
    return stage is not None and stage.index == other.index


def _rate_stage(
    stage: StagePlan, load: LoadConfig, seed: int, now_s: Callable[[], float],
    plan: LoadPlan, slot: int, dispatchers: int,
) -> Iterator[Launch | Wait]:  # fmt: skip
    arrivals = iter_arrivals(
        stage.load, stage.start_s, stage.latest_end_s, load.arrival,
        f"{seed}:{stage.index}", load.burstiness,
    )  # fmt: skip
    for index, at_s in enumerate(arrivals):
        if index % dispatchers != slot:
            continue
        while at_s > now_s():  # a Wait may end early, when the plan decides an ending
            if not _same(plan.stage_at(at_s), stage):
                return  # the stage ends before this arrival
            yield Wait(at_s)
        if not _same(plan.stage_at(at_s), stage):
            return
        yield Launch(stage, index, at_s)


def _batch_stage(
    stage: StagePlan, now_s: Callable[[], float], plan: LoadPlan, slot: int, dispatchers: int
) -> Iterator[Launch | Wait | AwaitRound]:
    while stage.start_s > now_s():
        yield Wait(stage.start_s)
    at_s = now_s()
    mine = [i for i in range(stage.users) if i % dispatchers == slot]
    round_index = 0
    while _same(plan.stage_at(at_s), stage):
        for i in mine:
            yield Launch(stage, round_index * stage.users + i, at_s)
        yield AwaitRound(stage)
        round_index += 1
        at_s = now_s()


def dispatch_plan(
    plan: LoadPlan,
    load: LoadConfig,
    seed: int,
    now_s: Callable[[], float],
    slot: int = 0,
    dispatchers: int = 1,
) -> Iterator[Launch | Wait | AwaitRound]:
    """The steps of one dispatcher; `now_s()` is the run time (seconds since stage 0)."""
    stage = plan.stage_at(0.0)
    while stage is not None:
        if plan.mode == "rate":
            yield from _rate_stage(stage, load, seed, now_s, plan, slot, dispatchers)
        else:
            yield from _batch_stage(stage, now_s, plan, slot, dispatchers)
        stage = plan.following(stage)


def connect_backoff_s(previous_s: float, outcome: Outcome) -> float:
    """How long a closed-loop user waits before its next request: nothing after an answer;
    after a failed connection, 50 ms doubling to 1 s, so a dead target is not hammered with
    thousands of records a second (TRAPS.md)."""
    if outcome not in _CONNECTION_LOST:
        return 0.0
    return min(max(previous_s * 2, _BACKOFF_FIRST_S), _BACKOFF_MAX_S)
