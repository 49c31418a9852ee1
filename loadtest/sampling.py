"""Before a run: how long each stage will take to collect the ok samples it needs (pure).

From one request's time (the readiness probe's, at concurrency 1) and the stage's load: a
closed-loop stage of N users, or a batch of N, completes about N requests per request time;
an open-loop stage completes its offered rate. A stage whose count lies beyond its cap
(`load.max_stage_duration`) cannot plausibly reach it and will end invalid, which the user
should hear before waiting for it. Under load requests get slower, so these are lower bounds.
"""

from __future__ import annotations

from dataclasses import dataclass

from loadtest.config import LoadConfig, SampleGoal, WorkloadConfig, load_unit
from loadtest.records import RequestRecord

__all__ = ["StageEstimate", "estimate_stages", "request_seconds"]


def request_seconds(probe: RequestRecord, workload: WorkloadConfig) -> float:
    """One request's time from a probe's record: its TTFT plus its time per token over the
    workload's mean output length (a readiness probe asks for the longest), else its E2E."""
    if probe.ttft_ms is not None and probe.tpot_ms is not None:
        tokens = workload.output_tokens.mean
        return (probe.ttft_ms + probe.tpot_ms * max(tokens - 1, 0)) / 1000
    return (probe.e2e_ms or 0.0) / 1000


@dataclass(frozen=True)
class StageEstimate:
    position: int  # in the configured list of stages
    load: float
    mode: str
    samples_per_s: float
    need: int
    percentile: str
    duration_s: float
    cap_s: float

    @property
    def needs_s(self) -> float:
        """Measured seconds until the stage has its count, at the estimated pace."""
        return self.need / self.samples_per_s if self.samples_per_s > 0 else float("inf")

    @property
    def extended(self) -> bool:
        return self.needs_s > self.duration_s

    @property
    def capped(self) -> bool:
        return self.needs_s > self.cap_s

    def describe(self, request_s: float) -> str:
        """One line for the user, or "" when the stage's duration is enough."""
        where = f"stage {self.position + 1} ({load_unit(self.mode, self.load)})"
        pace = f"at the readiness probe's ~{request_s:.2g} s per request"
        count = f"the {self.need} ok samples a {self.percentile} needs"
        if self.capped:
            return (
                f"{where} cannot plausibly collect {count} within load.max_stage_duration "
                f"({self.cap_s:g} s): {pace} that takes ~{self.needs_s:.0f} s; it will stop "
                "at the cap and be invalid (raise max_stage_duration or the stage's load)"
            )
        if self.extended:
            return (
                f"{where} will run ~{self.needs_s:.0f} s instead of {self.duration_s:g} s to "
                f"collect {count} ({pace})"
            )
        return ""


def estimate_stages(load: LoadConfig, goal: SampleGoal, request_s: float) -> list[StageEstimate]:
    """Each configured stage's estimate, given one request's time in seconds."""
    out = []
    for position, value in enumerate(load.stages):
        if load.mode == "rate":
            per_s = float(value)
        else:
            per_s = float(value) / request_s if request_s > 0 else float("inf")
        out.append(
            StageEstimate(
                position=position,
                load=float(value),
                mode=load.mode,
                samples_per_s=per_s,
                need=goal.min_ok,
                percentile=goal.percentile,
                duration_s=load.stage_duration,
                cap_s=load.stage_cap_s,
            )
        )
    return out
