"""Config models owned by the analysis: service-level objectives, validity limits, reference."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "DEFAULT_PERCENTILES",
    "AnalysisConfig",
    "Objective",
    "SloConfig",
    "percentile_word",
]

DEFAULT_PERCENTILES = (50.0, 90.0, 95.0, 99.0)
"""The percentiles every latency is reported at unless `analysis.percentiles` says otherwise."""

Metric = Literal["ttft", "tpot", "e2e"]
_Percentile = float


def percentile_word(p: float) -> str:
    """`95` for 95.0, `99.9` for 99.9: how a percentile appears in names (`ttft_p99.9_ms`)."""
    return str(int(p)) if float(p).is_integer() else f"{p:g}"


@dataclass(frozen=True)
class Objective:
    """One SLO objective: the `percentile` of `metric` must be at most `limit_ms`."""

    metric: Metric
    percentile: float
    limit_ms: float

    @property
    def label(self) -> str:
        """`TTFT p95`."""
        return f"{self.metric.upper()} p{percentile_word(self.percentile)}"

    @property
    def column(self) -> str:
        """The summary column holding the figure: `ttft_p95_ms`."""
        return f"{self.metric}_p{percentile_word(self.percentile)}_ms"


def _check_percentile(value: float | None) -> float | None:
    if value is not None and not 0 < value < 100:
        raise ValueError(f"a percentile lies strictly between 0 and 100, not {value:g}")
    return value


class SloConfig(BaseModel):
    """Per-request latency objectives (defaults: MLPerf Llama-3.1-8B server, TTFT/TPOT).

    Each objective holds a percentile of a stage's requests to a limit: `percentile` (95 by
    default) for all, or `ttft_percentile` etc. for one. Goodput counts the requests that are
    within every limit. The report, the headline and the capacity plan use the same objectives.
    """

    model_config = ConfigDict(extra="forbid")

    ttft_ms: float | None = Field(default=2000.0, gt=0)
    tpot_ms: float | None = Field(default=100.0, gt=0)
    e2e_ms: float | None = Field(default=None, gt=0)
    percentile: float = 95.0
    ttft_percentile: float | None = None
    tpot_percentile: float | None = None
    e2e_percentile: float | None = None

    @field_validator("percentile", "ttft_percentile", "tpot_percentile", "e2e_percentile")
    @classmethod
    def _percentile(cls, value: float | None) -> float | None:
        return _check_percentile(value)

    def objectives(self) -> list[Objective]:
        """The objectives that are set, TTFT then TPOT then E2E."""
        out = []
        for metric in ("ttft", "tpot", "e2e"):
            limit = getattr(self, f"{metric}_ms")
            if limit is not None:
                p = getattr(self, f"{metric}_percentile")
                out.append(Objective(metric, self.percentile if p is None else p, limit))
        return out

    def percentiles(self) -> set[float]:
        return {o.percentile for o in self.objectives()}


class AnalysisConfig(BaseModel):
    """Validity limits of a stage, what is reported, and how targets are compared.

    `reference`: the target whose figures ratios are taken against; when unset, the target
    with `quant: fp16` (the first, if several); when neither, the report shows no ratios.
    `percentiles`: reported for every latency (the SLO's are always added).
    `max_loop_lag_p99_ms`: how long the generator's own work may hold its event loop (a probe
    timer's lateness while the process was busy; p99 over the stage, busiest process) before
    the stage is not trusted. Token stamps are the kernel's receive times (Linux), exact while
    the loop is held; what a held loop delays is the next send and the next read, and a read
    later than the inter-token gap merges two tokens under one stamp. 20 ms sits below the
    inter-token gap of most served models (25-50 ms) and above a shared host's scheduling noise
    (5-6 ms measured on a 2-core CI machine); lower it for a faster decode.
    `tie_margin`: in pairwise comparisons, a ratio whose 95% interval reaches within this
    fraction of 1 (±5% by default) is a tie ("within noise"), not a difference. The interval
    covers each run's sampling noise; targets measured one after the other also drift by a
    few percent (a busy host, thermal state), which only repeats can measure, so the margin
    stands for that drift until they do. `kwh_cost`: the price of a kWh, for the plan's
    energy cost per million output tokens (`quantbench plan --kwh-cost` overrides it).
    """

    model_config = ConfigDict(extra="forbid")

    max_error_rate: float = Field(default=0.01, ge=0, le=1)
    min_samples_p95: int = Field(default=59, ge=1)
    max_schedule_lag_p99_ms: float = Field(default=5.0, gt=0)
    max_generator_cpu_percent: float = Field(default=90.0, gt=0)
    max_loop_lag_p99_ms: float = Field(default=20.0, gt=0)
    reference: str | None = Field(default=None, min_length=1)
    percentiles: list[_Percentile] = Field(
        default_factory=lambda: list(DEFAULT_PERCENTILES), min_length=1
    )
    tie_margin: float = Field(default=0.05, ge=0, lt=1)
    kwh_cost: float | None = Field(default=None, gt=0)  # electricity price for the plan

    @field_validator("percentiles")
    @classmethod
    def _percentiles(cls, values: list[float]) -> list[float]:
        for value in values:
            _check_percentile(value)
        return sorted({50.0, *values})  # the median is always reported: pairs compare on it
