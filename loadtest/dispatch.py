"""What an open-loop or batch dispatcher sends, and when: a pure generator, testable with a
fake clock like `LoadPlan`, that the Locust adapter only executes.

Open loop (`rate`): every arrival of the one seeded global schedule of each stage, keeping
those whose index falls to this dispatcher (`index % dispatchers == slot`), so N generator
processes share one schedule and send each arrival once. Arrivals are drawn lazily: the
plan's memory does not grow with the rate.

Batch: at the stage's start, `load` requests together, then `AwaitRound` (the executor waits
until every one has ended), then the next round at the time the clock then says, while
that time is inside the stage.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from loadtest.arrivals import iter_arrivals
from loadtest.config import LoadConfig
from loadtest.records import Outcome
from loadtest.shapes import LoadPlan, StagePlan

__all__ = ["AwaitRound", "Launch", "connect_backoff_s", "dispatch_plan"]

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
class AwaitRound:
    """Batch: wait until every request launched so far has ended."""

    stage: StagePlan


def dispatch_plan(
    plan: LoadPlan,
    load: LoadConfig,
    seed: int,
    now_s: Callable[[], float],
    slot: int = 0,
    dispatchers: int = 1,
) -> Iterator[Launch | AwaitRound]:
    """The launches of one dispatcher; `now_s()` is the run time (seconds since stage 0)."""
    for stage in plan.stages:
        if plan.mode == "rate":
            arrivals = iter_arrivals(
                stage.load, stage.start_s, stage.end_s, load.arrival,
                f"{seed}:{stage.index}", load.burstiness,
            )  # fmt: skip
            for index, at_s in enumerate(arrivals):
                if index % dispatchers == slot:
                    yield Launch(stage, index, at_s)
            continue
        at_s = max(stage.start_s, now_s())
        round_index = 0
        while at_s < stage.end_s:
            for i in range(stage.users):
                yield Launch(stage, round_index * stage.users + i, at_s)
            yield AwaitRound(stage)
            round_index += 1
            at_s = now_s()


def connect_backoff_s(previous_s: float, outcome: Outcome) -> float:
    """How long a closed-loop user waits before its next request: nothing after an answer;
    after a failed connection, 50 ms doubling to 1 s, so a dead target is not hammered with
    thousands of records a second (TRAPS.md)."""
    if outcome not in _CONNECTION_LOST:
        return 0.0
    return min(max(previous_s * 2, _BACKOFF_FIRST_S), _BACKOFF_MAX_S)
