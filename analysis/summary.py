"""Per target × stage figures: the rows of summary.csv and each stage's validity.

Latency percentiles come from the raw records of the stage's measurement window (warm-up
excluded); throughput counts the requests and tokens that *finished* inside the window.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis.config import AnalysisConfig, SloConfig
from analysis.stats import quantile
from loadtest.records import StageRecord

__all__ = ["SUMMARY_COLUMNS", "FailureCost", "TargetInfo", "summarize"]

SUMMARY_COLUMNS = [
    "target",
    "stack",
    "quant",
    "simulated",
    "stage",
    "mode",
    "load",
    "requests",
    "ok",
    "errors",
    "duration_s",
    "req_per_s",
    "output_tok_per_s",
    "ttft_p50_ms",
    "ttft_p95_ms",
    "ttft_p99_ms",
    "tpot_p50_ms",
    "tpot_p95_ms",
    "itl_p50_ms",
    "itl_p95_ms",
    "e2e_p50_ms",
    "e2e_p95_ms",
    "ttft_p95_all_ms",
    "e2e_p95_all_ms",
    "schedule_lag_p99_ms",
    "goodput_req_per_s",
    "valid",
    "invalid_reason",
]


@dataclass(frozen=True)
class FailureCost:
    """What a failed request counts as in all-request percentiles: its timeouts (ms)."""

    ttft_ms: float
    e2e_ms: float


@dataclass(frozen=True)
class TargetInfo:
    name: str
    stack: str
    quant: str
    simulated: bool


def _meets_slo(frame: pd.DataFrame, slo: SloConfig) -> pd.Series:
    met = pd.Series(True, index=frame.index)
    for column, limit in (
        ("ttft_ms", slo.ttft_ms),
        ("tpot_ms", slo.tpot_ms),
        ("e2e_ms", slo.e2e_ms),
    ):
        if limit is not None:
            values = frame[column].astype(float)
            within = values <= limit
            if column == "tpot_ms":
                within |= values.isna()  # one output token: TPOT undefined, cannot violate
            met &= within
    return met


def _q(values: Any, q: float) -> float | None:
    return quantile(values, q).value


def _generator_cpu(generator: pd.DataFrame, stage: StageRecord) -> float | None:
    """The busiest generator process's mean CPU over the stage's measured window."""
    if generator.empty:
        return None
    start = stage.start_wall_s + stage.warmup_s
    window = generator[(generator["wall_s"] >= start) & (generator["wall_s"] <= stage.end_wall_s)]
    if window.empty:
        return None
    return float(window.groupby("pid")["cpu_percent"].mean().max())


def _with_failures(ok: pd.Series, failed: int, cost_ms: float) -> np.ndarray:
    """ok values plus each failure at its timeout, so failing fast cannot look fast."""
    return np.concatenate([ok.astype(float).to_numpy(), np.full(failed, cost_ms)])


def _stage_row(
    stage: StageRecord,
    info: TargetInfo,
    requests: pd.DataFrame,
    slo: SloConfig,
    limits: AnalysisConfig,
    cost: FailureCost,
    generator: pd.DataFrame,
) -> dict[str, Any]:
    measure_start_ns = stage.start_ns + int(stage.warmup_s * 1e9)
    duration_s = max((stage.end_ns - measure_start_ns) / 1e9, 1e-9)
    scheduled = requests[(requests["stage"] == stage.stage) & ~requests["warmup"].astype(bool)]
    ok = scheduled[scheduled["outcome"] == "ok"]
    all_ok = requests[requests["outcome"] == "ok"]
    end_ns = all_ok["end_ns"].astype(float)
    finished = all_ok[(end_ns >= measure_start_ns) & (end_ns <= stage.end_ns)]
    itl = np.concatenate([np.asarray(v, dtype=float) for v in ok["itl_ms"]] or [np.empty(0)])
    n, n_ok = len(scheduled), len(ok)
    reasons = []
    if not stage.completed:
        reasons.append("stage stopped before its end")
    if stage.workers_lost:
        reasons.append("a load-generator worker was lost during the stage")
    if stage.mode != "concurrency" and n:
        sent = int((scheduled["outcome"] != "not_sent").sum())
        if sent < 0.99 * n:
            reasons.append(f"only {sent} of {n} scheduled requests were sent (in-flight cap)")
        lag = _q(scheduled["schedule_lag_ms"].dropna(), 0.99)
        if lag is not None and lag > limits.max_schedule_lag_p99_ms:
            reasons.append(
                f"p99 schedule lag {lag:.1f} ms > {limits.max_schedule_lag_p99_ms:g} ms: "
                "the generator fell behind its schedule"
            )
    cpu = _generator_cpu(generator, stage)
    if cpu is not None and cpu > limits.max_generator_cpu_percent:
        reasons.append(
            f"load generator at {cpu:.0f}% CPU (> {limits.max_generator_cpu_percent:g}%): "
            "timings unreliable, add --processes"
        )
    if n_ok < limits.min_samples_p95:
        reasons.append(f"{n_ok} ok samples, p95 needs {limits.min_samples_p95}")
    error_rate = (n - n_ok) / n if n else 0.0
    if error_rate > limits.max_error_rate:
        reasons.append(f"error rate {error_rate:.1%} > {limits.max_error_rate:.1%}")
    return {
        "target": info.name,
        "stack": info.stack,
        "quant": info.quant,
        "simulated": info.simulated,
        "stage": stage.stage,
        "mode": stage.mode,
        "load": stage.load,
        "requests": n,
        "ok": n_ok,
        "errors": n - n_ok,
        "duration_s": duration_s,
        "req_per_s": len(finished) / duration_s,
        "output_tok_per_s": float(finished["output_tokens"].sum()) / duration_s,
        "ttft_p50_ms": _q(ok["ttft_ms"], 0.5),
        "ttft_p95_ms": _q(ok["ttft_ms"], 0.95),
        "ttft_p99_ms": _q(ok["ttft_ms"], 0.99),
        "tpot_p50_ms": _q(ok["tpot_ms"], 0.5),
        "tpot_p95_ms": _q(ok["tpot_ms"], 0.95),
        "itl_p50_ms": _q(itl, 0.5),
        "itl_p95_ms": _q(itl, 0.95),
        "e2e_p50_ms": _q(ok["e2e_ms"], 0.5),
        "e2e_p95_ms": _q(ok["e2e_ms"], 0.95),
        "ttft_p95_all_ms": _q(_with_failures(ok["ttft_ms"], n - n_ok, cost.ttft_ms), 0.95),
        "e2e_p95_all_ms": _q(_with_failures(ok["e2e_ms"], n - n_ok, cost.e2e_ms), 0.95),
        "schedule_lag_p99_ms": _q(scheduled["schedule_lag_ms"].dropna(), 0.99),
        "goodput_req_per_s": int(_meets_slo(finished, slo).sum()) / duration_s,
        "valid": not reasons,
        "invalid_reason": "; ".join(reasons),
    }


def summarize(
    requests: pd.DataFrame,
    stages: list[StageRecord],
    targets: dict[str, TargetInfo],
    slo: SloConfig,
    limits: AnalysisConfig | None = None,
    cost: FailureCost | None = None,
    generator: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per target × stage, in run order, with the columns of DESIGN.md."""
    limits = limits or AnalysisConfig()
    cost = cost or FailureCost(ttft_ms=60_000.0, e2e_ms=300_000.0)
    generator = generator if generator is not None else pd.DataFrame()
    rows = []
    for stage in stages:
        info = targets.get(stage.target) or TargetInfo(stage.target, "other", "", False)
        mine = requests[requests["target"] == stage.target]
        rows.append(_stage_row(stage, info, mine, slo, limits, cost, generator))
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
