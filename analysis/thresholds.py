"""The regression gate's thresholds (config owned by the analysis): how large a change must be,
per metric and per target, before `quantbench compare` calls it a regression.

Every value is in percent: `latency: 5` (or `"5%"`) means a latency percentile regresses when
its whole 95% interval lies above +5%; `throughput: 3` when it lies below −3%; `error_rate:
0.5` when the error rate rose by more than 0.5 percentage points. The most specific setting
wins: a target's metric, then the target's group, then the metric, then the group, then the
built-in default.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

__all__ = [
    "DEFAULT_THRESHOLDS",
    "DigestPolicy",
    "MetricGroup",
    "TargetThresholds",
    "Thresholds",
    "parse_percent",
]

MetricGroup = Literal["latency", "throughput", "error_rate"]
DigestPolicy = Literal["warn", "refuse"]

DEFAULT_THRESHOLDS: dict[MetricGroup, float] = {
    "latency": 5.0,
    "throughput": 3.0,
    "error_rate": 0.5,
}
"""Built-in thresholds in percent (error rate: percentage points), as issue 14 set them."""


def parse_percent(value: object) -> object:
    """`5`, `5.0`, `"5%"` or `"5 %"` → 5.0 (percent); anything else is left to fail."""
    if isinstance(value, bool):
        raise ValueError(f"{str(value).lower()} is not a percentage; write e.g. 5 or 5%")
    if isinstance(value, str):
        text = value.strip().removesuffix("%").strip()
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{value!r} is not a percentage; write e.g. 5 or 5%") from None
    return value


Percent = Annotated[float, BeforeValidator(parse_percent), Field(ge=0, lt=100)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class TargetThresholds(_Strict):
    """One target's own thresholds: by group and by metric (e.g. `tpot_p95: 8%`)."""

    latency: Percent | None = None
    throughput: Percent | None = None
    error_rate: Percent | None = None
    metrics: dict[str, Percent] = Field(default_factory=dict)


class Thresholds(_Strict):
    """A thresholds file (`compare --thresholds FILE`); an empty file means the defaults."""

    latency: Percent = DEFAULT_THRESHOLDS["latency"]
    throughput: Percent = DEFAULT_THRESHOLDS["throughput"]
    error_rate: Percent = DEFAULT_THRESHOLDS["error_rate"]
    metrics: dict[str, Percent] = Field(default_factory=dict)
    targets: dict[str, TargetThresholds] = Field(default_factory=dict)
    image_digest: DigestPolicy = "warn"

    def percent(self, target: str, metric: str, group: MetricGroup) -> float:
        """The threshold in percent (points for the error rate) for one target's metric."""
        own = self.targets.get(target)
        if own is not None:
            if metric in own.metrics:
                return own.metrics[metric]
            value = getattr(own, group)
            if value is not None:
                return float(value)
        if metric in self.metrics:
            return self.metrics[metric]
        return float(getattr(self, group))

    def unknown_metrics(self, known: set[str]) -> list[str]:
        """Metric names the file sets that `compare` does not know (typos)."""
        named = set(self.metrics)
        for own in self.targets.values():
            named |= set(own.metrics)
        return sorted(named - known)
