"""Whether a stage's figures can be trusted, decided in one place (MEASUREMENT.md "Validity").

Everything a verdict needs arrives first — the stage record, its requests' counts and
failures, the generator's event-loop lag and CPU, a server restart, what happened to a compose
target's container (restarted, OOM-killed, stopped: analysis/container_stages.py) — and the
reasons come out in the order a reader should act on them: what broke the run, then what the
target did, then the generator (its lag, the direct sign that its stamps are late, before its
CPU, the indirect one). When connection errors dominate, they are named as the cause: a
generator retrying tens of thousands of refused connections gets busy, and its lag and CPU are
then symptoms, not the problem.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from analysis.config import AnalysisConfig, SloConfig, percentile_word
from analysis.errors import CONNECTION_OUTCOMES
from analysis.stats import min_samples

__all__ = ["StageEvidence", "invalid_reasons", "samples_needed"]


@dataclass(frozen=True)
class StageEvidence:
    """What is known about one stage when its validity is decided."""

    mode: str
    requests: int  # scheduled in the measured window
    ok: int
    failures: Mapping[str, int] = field(default_factory=dict)  # outcome → count, non-ok only
    completed: bool = True
    workers_lost: int = 0
    restart: str | None = None  # why the server is thought to have restarted, if it did
    container: str | None = None  # what happened to its container (restart, OOM kill…)
    schedule_lag_p99_ms: float | None = None
    generator_cpu_percent: float | None = None
    loop_lag_p99_ms: float | None = None  # how long its own work held the generator's loop
    capped_s: float | None = None  # the stage ran to its cap (load.max_stage_duration)
    slo_early: bool = False  # a search ended it once its SLO verdict was clear (search.jsonl)


def samples_needed(slo: SloConfig, limits: AnalysisConfig) -> tuple[int, str]:
    """The ok samples a stage needs so that every SLO percentile is supported, and that
    percentile's name (`p95` needs `analysis.min_samples_p95`, 59 by default; p99 needs 299)."""
    best, label = 1, "p50"
    for p in slo.percentiles() or {95.0}:
        need = limits.min_samples_p95 if p == 95.0 else min_samples(p / 100)
        if need >= best:
            best, label = need, f"p{percentile_word(p)}"
    return best, label


def _failures_text(failures: Mapping[str, int]) -> str:
    top = sorted(failures.items(), key=lambda item: -item[1])[:2]
    return ", ".join(f"{count:,} {outcome}" for outcome, count in top)


def invalid_reasons(
    evidence: StageEvidence, limits: AnalysisConfig, slo: SloConfig | None = None
) -> list[str]:
    """Why the stage is invalid, most fundamental first; empty when it is valid."""
    e = evidence
    reasons = []
    if not e.completed:
        reasons.append("stage stopped before its end")
    if e.workers_lost:
        reasons.append("a load-generator worker was lost during the stage")
    if e.restart:
        reasons.append(f"server restarted ({e.restart})")
    if e.container:
        reasons.append(e.container)
    failed = e.requests - e.ok
    error_rate = failed / e.requests if e.requests else 0.0
    connection = sum(count for name, count in e.failures.items() if name in CONNECTION_OUTCOMES)
    unreachable = failed > 0 and connection >= failed / 2
    if error_rate > limits.max_error_rate:
        text = f"error rate {error_rate:.1%} > {limits.max_error_rate:.1%}"
        if e.failures:
            text += f" ({_failures_text(e.failures)})"
        if unreachable:
            text += ": the target refused or dropped connections"
        reasons.append(text)
    need, label = samples_needed(slo or SloConfig(), limits)
    if e.ok < need:
        text = f"{e.ok} ok samples, {label} needs {need}"
        if e.capped_s is not None:
            text += f" (not reached within load.max_stage_duration, {e.capped_s:g} s)"
        if e.slo_early:
            text += " — the search ended it early, its SLO verdict already clear"
        reasons.append(text)
    if e.mode != "concurrency" and e.requests:
        not_sent = e.failures.get("not_sent", 0)
        sent = e.requests - not_sent
        if sent < 0.99 * e.requests:
            reasons.append(
                f"only {sent} of {e.requests} scheduled requests were sent (in-flight cap)"
            )
        lag = e.schedule_lag_p99_ms
        if lag is not None and lag > limits.max_schedule_lag_p99_ms:
            reasons.append(
                f"p99 schedule lag {lag:.1f} ms > {limits.max_schedule_lag_p99_ms:g} ms: "
                + (
                    "the generator was busy with failed connections"
                    if unreachable
                    else "the generator fell behind its schedule"
                )
            )
    busy = f"busy with {connection:,} failed connections: fix those first"
    loop = e.loop_lag_p99_ms
    if loop is not None and loop > limits.max_loop_lag_p99_ms:
        head = (
            f"load generator's own work held its event loop {loop:.1f} ms at p99 "
            f"(> {limits.max_loop_lag_p99_ms:g} ms)"
        )
        if unreachable:
            reasons.append(f"{head}, {busy}")
        else:
            reasons.append(
                f"{head}: its sends and reads fell behind (reads later than a token gap merge "
                "tokens), raise load.processes"
            )
    cpu = e.generator_cpu_percent
    if cpu is not None and cpu > limits.max_generator_cpu_percent:
        head = f"load generator at {cpu:.0f}% CPU (> {limits.max_generator_cpu_percent:g}%)"
        if unreachable:
            reasons.append(f"{head}, {busy}")
        else:
            reasons.append(f"{head}: timings unreliable, raise load.processes")
    return reasons
