"""A stage's GPU figures from GPU samples: mean and peak power, energy, throttled time, and
energy per output token, per request and tokens per joule. Pure functions of the samples
(loadtest.gpu_records.GpuSample, from gpu.jsonl or a dcgm-exporter page) and a stage window.

Energy is the difference of the driver's energy counter across the window when every sample
that brackets it carries one, else the trapezoid integral of the sampled power; either way the
values at the window's edges are linearly interpolated between the samples around them. Power
between two samples is unknown: with samples `h` seconds apart, a step of `dP` watts inside the
window costs at most `h * dP / 2` joules of error in the integral (docs/telemetry.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from loadtest.gpu_records import THROTTLING, GpuSample

__all__ = ["EnergyPerWork", "StageGpu", "per_work", "stage_gpu", "sum_gpus"]

EnergyMethod = Literal["counter", "integral"]


@dataclass(frozen=True)
class StageGpu:
    """One GPU (or several, summed by `sum_gpus`) over one stage window.

    `covered_s` is the part of the window between the first and last power sample that
    bracket it; less than `duration_s` means the edges were held from the nearest sample.
    Power and energy are None where no sample carried power. `throttled_s` counts the time
    the clock-event reasons said power or heat held the clocks back (each sample's reasons
    held until the next sample); `throttle_reasons` ORs every reason seen in the window.
    """

    gpus: tuple[int, ...]
    start_wall_s: float
    end_wall_s: float
    samples: int
    covered_s: float
    mean_power_w: float | None
    peak_power_w: float | None
    energy_j: float | None
    energy_method: EnergyMethod | None
    throttled_s: float | None
    throttle_reasons: int | None
    mean_gpu_util_pct: float | None
    mean_sm_active: float | None
    peak_memory_used_mib: float | None
    max_temperature_c: float | None

    @property
    def duration_s(self) -> float:
        return self.end_wall_s - self.start_wall_s

    @property
    def throttled(self) -> bool | None:
        """Whether power or heat held the clocks back at any time in the window."""
        return None if self.throttled_s is None else self.throttled_s > 0


@dataclass(frozen=True)
class EnergyPerWork:
    """Energy against the work a stage did (None where a count is zero or energy unknown)."""

    energy_per_output_token_j: float | None
    energy_per_request_j: float | None
    output_tokens_per_j: float | None


def stage_gpu(
    samples: Iterable[GpuSample], start_wall_s: float, end_wall_s: float, gpu: int
) -> StageGpu:
    """The figures of GPU `gpu` over [start_wall_s, end_wall_s] (Unix seconds)."""
    if end_wall_s <= start_wall_s:
        raise ValueError(f"empty stage window: {start_wall_s} .. {end_wall_s}")
    mine = sorted((s for s in samples if s.gpu == gpu), key=lambda s: s.wall_s)
    inside = [s for s in mine if start_wall_s <= s.wall_s <= end_wall_s]
    powered = [(s.wall_s, s.power_w) for s in mine if s.power_w is not None]
    energy, method, covered = _energy(mine, powered, start_wall_s, end_wall_s)
    peak = max((p for t, p in powered if start_wall_s <= t <= end_wall_s), default=None)
    if peak is None and powered:  # no sample inside: the larger interpolated edge
        times, watts = np.array(powered).T
        peak = float(np.max(np.interp([start_wall_s, end_wall_s], times, watts)))
    return StageGpu(
        gpus=(gpu,),
        start_wall_s=start_wall_s,
        end_wall_s=end_wall_s,
        samples=len(inside),
        covered_s=covered,
        mean_power_w=None if energy is None else energy / (end_wall_s - start_wall_s),
        peak_power_w=peak,
        energy_j=energy,
        energy_method=method,
        throttled_s=_throttled_s(mine, start_wall_s, end_wall_s),
        throttle_reasons=_reasons_seen(inside),
        mean_gpu_util_pct=_mean(s.gpu_util_pct for s in inside),
        mean_sm_active=_mean(s.sm_active for s in inside),
        peak_memory_used_mib=_max(s.memory_used_mib for s in inside),
        max_temperature_c=_max(s.temperature_c for s in inside),
    )


def sum_gpus(figures: Sequence[StageGpu]) -> StageGpu:
    """The GPUs of one multi-GPU target over the same window: energy and mean power add up;
    peak power is the sum of each GPU's peak (an upper bound, peaks need not coincide);
    throttled time is the longest of any GPU's; means are averaged over the GPUs."""
    if not figures:
        raise ValueError("no GPU figures to sum")
    first = figures[0]
    window = (first.start_wall_s, first.end_wall_s)
    if any((f.start_wall_s, f.end_wall_s) != window for f in figures):
        raise ValueError("GPU figures of different windows cannot be summed")
    methods = {f.energy_method for f in figures}
    reasons = [f.throttle_reasons for f in figures if f.throttle_reasons is not None]
    return StageGpu(
        gpus=tuple(g for f in figures for g in f.gpus),
        start_wall_s=first.start_wall_s,
        end_wall_s=first.end_wall_s,
        samples=sum(f.samples for f in figures),
        covered_s=min(f.covered_s for f in figures),
        mean_power_w=_sum_all(f.mean_power_w for f in figures),
        peak_power_w=_sum_all(f.peak_power_w for f in figures),
        energy_j=_sum_all(f.energy_j for f in figures),
        energy_method=methods.pop() if len(methods) == 1 else "integral",
        throttled_s=_max(f.throttled_s for f in figures),
        throttle_reasons=_or(reasons) if reasons else None,
        mean_gpu_util_pct=_mean(f.mean_gpu_util_pct for f in figures),
        mean_sm_active=_mean(f.mean_sm_active for f in figures),
        peak_memory_used_mib=_sum_all(f.peak_memory_used_mib for f in figures),
        max_temperature_c=_max(f.max_temperature_c for f in figures),
    )


def per_work(figures: StageGpu, output_tokens: int, requests: int) -> EnergyPerWork:
    """J per output token, J per request and output tokens per J of a stage."""
    energy = figures.energy_j
    if energy is None:
        return EnergyPerWork(None, None, None)
    return EnergyPerWork(
        energy_per_output_token_j=energy / output_tokens if output_tokens > 0 else None,
        energy_per_request_j=energy / requests if requests > 0 else None,
        output_tokens_per_j=output_tokens / energy if energy > 0 else None,
    )


# ---------------------------------------------------------------------------- internals
def _energy(
    mine: list[GpuSample], powered: list[tuple[float, float]], start: float, end: float
) -> tuple[float | None, EnergyMethod | None, float]:
    """(joules, how, covered seconds) over [start, end]."""
    if not powered:
        return None, None, 0.0
    covered = max(0.0, min(end, powered[-1][0]) - max(start, powered[0][0]))
    counted = [(s.wall_s, s.energy_mj) for s in mine if s.energy_mj is not None]
    from_counter = _counter_energy_j(counted, start, end)
    if from_counter is not None:
        return from_counter, "counter", covered
    return _trapezoid_j(powered, start, end), "integral", covered


def _counter_energy_j(points: list[tuple[float, float]], start: float, end: float) -> float | None:
    """The counter's increase across the window, if samples bracket both edges and the
    counter never went down (a driver reload resets it)."""
    if not points or points[0][0] > start or points[-1][0] < end:
        return None
    times, counts = np.array(points).T
    if np.any(np.diff(counts) < 0):
        return None
    at_start, at_end = np.interp([start, end], times, counts)
    return float(at_end - at_start) / 1000.0


def _trapezoid_j(points: list[tuple[float, float]], start: float, end: float) -> float:
    """The integral of power over the window: the samples inside it plus its two edges,
    interpolated between the samples around each edge (np.interp holds the nearest sample
    where none lies beyond an edge)."""
    times, watts = np.array(points).T
    inner = (times > start) & (times < end)
    t = np.concatenate(([start], times[inner], [end]))
    p = np.concatenate(
        (np.interp([start], times, watts), watts[inner], np.interp([end], times, watts))
    )
    return float(np.sum(np.diff(t) * (p[1:] + p[:-1]) / 2))


def _throttled_s(mine: list[GpuSample], start: float, end: float) -> float | None:
    """Seconds of the window whose latest sample said power or heat held the clocks back."""
    marks = [(s.wall_s, s.throttle_reasons) for s in mine if s.throttle_reasons is not None]
    if not marks:
        return None
    before = [m for m in marks if m[0] <= start]
    held = before[-1][1] if before else marks[0][1]  # before the first sample: held from it
    total, at = 0.0, start
    for t, reasons in marks:
        if t <= start:
            continue
        if t >= end:
            break
        if held & THROTTLING:
            total += t - at
        at, held = t, reasons
    if held & THROTTLING:
        total += end - at
    return total


def _reasons_seen(inside: list[GpuSample]) -> int | None:
    reasons = [s.throttle_reasons for s in inside if s.throttle_reasons is not None]
    return _or(reasons) if reasons else None


def _or(values: Iterable[int]) -> int:
    result = 0
    for value in values:
        result |= value
    return result


def _mean(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _max(values: Iterable[float | None]) -> float | None:
    return max((v for v in values if v is not None), default=None)


def _sum_all(values: Iterable[float | None]) -> float | None:
    """The sum, or None if any part is unknown (a partial sum would understate)."""
    items = list(values)
    return None if any(v is None for v in items) else sum(v for v in items if v is not None)
