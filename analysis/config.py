"""Config models owned by the analysis: service-level objectives, validity limits, reference."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["AnalysisConfig", "SloConfig"]


class SloConfig(BaseModel):
    """Per-request latency objectives used for goodput (defaults: MLPerf Llama-3.1-8B server).

    The report and the capacity plan hold each stage's p95 to the same limits.
    """

    model_config = ConfigDict(extra="forbid")

    ttft_ms: float | None = Field(default=2000.0, gt=0)
    tpot_ms: float | None = Field(default=100.0, gt=0)
    e2e_ms: float | None = Field(default=None, gt=0)


class AnalysisConfig(BaseModel):
    """Validity limits of a stage, and the target the others are compared against.

    `reference`: the target whose figures ratios are taken against; when unset, the target
    with `quant: fp16` (the first, if several); when neither, the report shows no ratios.
    """

    model_config = ConfigDict(extra="forbid")

    max_error_rate: float = Field(default=0.01, ge=0, le=1)
    min_samples_p95: int = Field(default=59, ge=1)
    max_schedule_lag_p99_ms: float = Field(default=5.0, gt=0)
    max_generator_cpu_percent: float = Field(default=90.0, gt=0)
    reference: str | None = Field(default=None, min_length=1)
