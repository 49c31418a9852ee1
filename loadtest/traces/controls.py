"""Time and volume controls over a columnar trace: pure functions, a new `Trace` each.

Order of application (`apply_controls`): the window is cut in trace time, then rows are
sampled, then time is compressed by `speedup`. A growth stage ×m replays that result m times
faster (m × its request rate, bursts and ramps included, in 1/m of the time).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from loadtest.seeds import hash_seed
from loadtest.traces.config import TraceConfig
from loadtest.traces.model import Trace, TraceError

__all__ = [
    "ReplayStage",
    "apply_controls",
    "growth_stages",
    "sample",
    "speedup",
    "stage_trace",
    "window",
]


def window(trace: Trace, start_s: float = 0.0, duration_s: float | None = None) -> Trace:
    """The requests sent in [start_s, start_s + duration_s), timed from `start_s`."""
    if start_s < 0 or (duration_s is not None and duration_s <= 0):
        raise ValueError("a window starts at 0 or later and lasts more than 0 s")
    end_s = trace.span_s if duration_s is None else start_s + duration_s
    if start_s > trace.span_s:
        raise TraceError(
            f"{trace.source}: start {start_s:g} s is past the trace's end ({trace.span_s:g} s)"
        )
    first, last = np.searchsorted(trace.offset_s, [start_s, end_s], side="left")
    if duration_s is None:
        last = len(trace)  # to the end, the last request included
    if last <= first:
        raise TraceError(
            f"{trace.source}: no requests between {start_s:g} s and {end_s:g} s of the trace"
        )
    picked = trace.take(np.arange(first, last))
    span_s = duration_s if duration_s is not None else trace.span_s - start_s
    return picked.with_offsets(picked.offset_s - start_s, float(span_s))


def sample(trace: Trace, fraction: float, seed: int | str = 0) -> Trace:
    """Each row kept with probability `fraction`, independently; the same seed keeps the same
    rows. Thinning keeps the arrival pattern's shape at `fraction` of its rate."""
    if not 0 < fraction <= 1:
        raise ValueError(f"sample must be in (0, 1], not {fraction}")
    if fraction == 1:
        return trace
    rng = np.random.default_rng(hash_seed(f"sample:{seed}"))
    kept = np.flatnonzero(rng.random(len(trace)) < fraction)
    if len(kept) == 0:
        raise TraceError(f"{trace.source}: sample {fraction:g} keeps no request; raise it")
    return trace.take(kept)


def speedup(trace: Trace, factor: float) -> Trace:
    """Replay `factor` times faster: every offset (and the span) divided by `factor`."""
    if factor <= 0:
        raise ValueError(f"speedup must be above 0, not {factor}")
    if factor == 1:
        return trace
    return trace.with_offsets(trace.offset_s / factor, trace.span_s / factor)


def apply_controls(trace: Trace, config: TraceConfig, seed: int | str = 0) -> Trace:
    """Window, then sample, then speedup, as `workload.trace` sets them."""
    controlled = trace
    if config.start > 0 or config.duration is not None:
        controlled = window(controlled, config.start, config.duration)
    controlled = sample(controlled, config.sample, seed)
    return speedup(controlled, config.speedup)


@dataclass(frozen=True)
class ReplayStage:
    """One stage of a growth sweep: the (controlled) trace at `multiplier` × its rate."""

    index: int
    multiplier: float
    duration_s: float
    requests: int
    rate_per_s: float  # mean offered rate over the stage


def stage_trace(trace: Trace, multiplier: float) -> Trace:
    """The trace a growth stage replays: the same requests, `multiplier` times faster."""
    return speedup(trace, multiplier)


def growth_stages(trace: Trace, multipliers: list[float]) -> list[ReplayStage]:
    """The stages of `load.mode: replay` (`stages: [1, 2, 4]`), each the whole trace."""
    stages = []
    for index, multiplier in enumerate(multipliers):
        if multiplier <= 0:
            raise ValueError(f"a replay stage is a rate multiplier above 0, not {multiplier}")
        duration_s = trace.span_s / multiplier
        rate = len(trace) / duration_s if duration_s > 0 else float("inf")
        stages.append(ReplayStage(index, float(multiplier), duration_s, len(trace), rate))
    return stages
