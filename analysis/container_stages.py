"""A compose target's container over each stage (pure): its CPU and memory from the stats
samples, and whether it restarted, was OOM-killed or stopped during the stage, from the
container samples `quantbench run` recorded (loadtest.container_records).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from loadtest.container_records import ContainerSample, change_reason
from loadtest.records import StageRecord

__all__ = ["StageResources", "container_changes", "stage_resources"]


class _Stats(Protocol):
    @property
    def wall_s(self) -> float: ...
    @property
    def cpu_total_ns(self) -> int | None: ...
    @property
    def memory_used_bytes(self) -> int | None: ...


@dataclass(frozen=True)
class StageResources:
    """A container's CPU and memory over a stage window (None: too few samples)."""

    cpu_cores_mean: float | None
    memory_mean_bytes: float | None
    memory_peak_bytes: int | None


def stage_resources(
    samples: Sequence[_Stats], start_wall_s: float, end_wall_s: float
) -> StageResources:
    """Mean CPU cores (CPU time used between the first and last sample in the window over
    their distance; None if the container was replaced between them, its counter reset) and
    mean/peak memory of the samples in [start_wall_s, end_wall_s]."""
    inside = sorted(
        (s for s in samples if start_wall_s <= s.wall_s <= end_wall_s), key=lambda s: s.wall_s
    )
    timed = [(s.wall_s, s.cpu_total_ns) for s in inside if s.cpu_total_ns is not None]
    cores = None
    if len(timed) >= 2 and timed[-1][0] > timed[0][0] and timed[-1][1] >= timed[0][1]:
        cores = (timed[-1][1] - timed[0][1]) / 1e9 / (timed[-1][0] - timed[0][0])
    memory = [s.memory_used_bytes for s in inside if s.memory_used_bytes is not None]
    if not memory:
        return StageResources(cores, None, None)
    return StageResources(cores, sum(memory) / len(memory), max(memory))


def _readable(samples: Iterable[ContainerSample]) -> list[ContainerSample]:
    return sorted((s for s in samples if s.error is None), key=lambda s: s.wall_s)


def container_changes(
    samples: Sequence[ContainerSample], stages: Sequence[StageRecord]
) -> dict[tuple[str, int], str]:
    """(target, stage) → why its container makes the stage invalid: the last sample at or
    before the stage began against the first at or after it ended (or the nearest inside),
    by `change_reason`. A (re)start is placed by its own start time when the Engine API
    gave one: it invalidates the stage it fell in, not a neighbour whose samples bracket
    it. A stage with no sample on one side is left alone."""
    by_target: dict[str, list[ContainerSample]] = {}
    for sample in _readable(samples):
        by_target.setdefault(sample.target, []).append(sample)
    found = {}
    for stage in stages:
        mine = by_target.get(stage.target)
        if not mine:
            continue
        before = [s for s in mine if s.wall_s <= stage.start_wall_s] or mine[:1]
        after = [s for s in mine if s.wall_s >= stage.end_wall_s] or mine[-1:]
        first, last = before[-1], after[0]
        if last.wall_s <= first.wall_s:
            continue
        reason = change_reason(first, last)
        if reason is None:
            continue
        started = last.started_wall_s
        restarted = last.started_at != first.started_at and not last.oom_killed
        if (
            restarted
            and started is not None
            and not stage.start_wall_s <= started <= stage.end_wall_s
        ):
            continue  # it restarted before or after this stage, not during it
        found[(stage.target, stage.stage)] = reason
    return found
