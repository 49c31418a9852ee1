"""The highest load each target sustains within an SLO, interpolated between its stages (pure).

Only measured stages count: an invalid stage, or one with too few samples for an objective's
percentile, is *unknown*, never a failure — it is skipped and named. A stage meets the SLO when
each objective is within its limit. Walking a target's measured stages by load, the limit lies
between the last stage that meets it and the first that does not, where the first latency
crosses its limit (linearly in load). A target with no measured stage is "not measured".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd

from analysis.config import SloConfig
from loadtest.config import load_unit

__all__ = [
    "Capacity",
    "CapacityStatus",
    "capacities",
    "capacity",
    "load_unit",
    "skip_reason",
    "slo_checks",
    "slo_text",
    "stage_meets",
]

CapacityStatus = Literal[
    "interpolated", "searched", "at_stage", "max_tested", "none", "not_measured"
]


@dataclass(frozen=True)
class Capacity:
    """Where a target's SLO limit lies, in offered load and in what it achieved there.

    status: `interpolated` between two stages; `searched`, a search's answer (`load` ±
    `half_width`: analysis/search_view.py); `at_stage`, the last passing stage (the next
    failed without a measurable crossing); `max_tested`, every measured stage met the SLO so
    the limit is at least the highest of them; `none`, the lowest measured stage failed;
    `not_measured`, no stage could be measured (all invalid, or none ran). `skipped` names
    the stages left out as unknown, with why.
    """

    target: str
    mode: str
    status: CapacityStatus
    load: float | None = None
    req_per_s: float | None = None
    output_tok_per_s: float | None = None
    limited_by: str = ""
    skipped: tuple[str, ...] = field(default=())
    half_width: float | None = None  # `searched`: the answer's ± in offered load

    @property
    def sustains(self) -> bool:
        return self.status in ("interpolated", "searched", "at_stage", "max_tested")

    @property
    def measured(self) -> bool:
        return self.status != "not_measured"

    @property
    def lower_bound(self) -> bool:
        """True when the real limit lies above the measured loads (every one passed)."""
        return self.status == "max_tested"

    def text(self, figure: str = "load", unit: str = "", *, note: bool = True) -> str:
        """`≈ 23.4`, `16`, `≥ 48 (max tested)`, `none` or `not measured` for `load`,
        `req_per_s` or `output_tok_per_s`, `unit` after the number (`note=False`: no note)."""
        if self.status == "none":
            return "none"
        value = getattr(self, figure)
        if self.status == "not_measured":
            return "not measured"
        if value is None:
            return "n/a"
        number = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
        number += f" {unit}" if unit else ""
        if self.status == "max_tested":
            return f"≥ {number} (max tested)" if note else f"≥ {number}"
        if self.status == "searched" and figure == "load" and self.half_width is not None:
            return f"{number} ± {self.half_width:.2g}"
        if self.status in ("interpolated", "searched"):
            return f"≈ {number}"
        return number

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "mode": self.mode,
            "load": self.load,
            "req_per_s": self.req_per_s,
            "output_tok_per_s": self.output_tok_per_s,
            "limited_by": self.limited_by,
            "half_width": self.half_width,
            "skipped_stages": list(self.skipped),
            "text": self.text(),
        }


def slo_checks(slo: SloConfig) -> list[tuple[str, str, float]]:
    """(label, summary column, limit in ms) for each objective the SLO sets."""
    return [(o.label, o.column, o.limit_ms) for o in slo.objectives()]


def slo_text(slo: SloConfig) -> str:
    return ", ".join(f"{label} ≤ {limit:g} ms" for label, _, limit in slo_checks(slo)) or "no SLO"


def _number(value: Any) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _where(row: dict[str, Any] | pd.Series) -> str:
    return load_unit(str(row["mode"]), float(row["load"]))


def skip_reason(row: dict[str, Any] | pd.Series, slo: SloConfig) -> str | None:
    """Why a stage cannot be judged against the SLO (invalid, or an objective's percentile
    has too few samples), or None when it can."""
    if not bool(row["valid"]):
        return f"{_where(row)}: invalid ({row.get('invalid_reason') or 'see validity'})"
    unknown = [label for label, column, _ in slo_checks(slo) if _number(row.get(column)) is None]
    if unknown:
        return f"{_where(row)}: {', '.join(unknown)} unknown (too few samples)"
    return None


def stage_meets(row: pd.Series | dict[str, Any], slo: SloConfig) -> bool:
    """Measured (valid, every objective known), and every objective within its limit."""
    if skip_reason(row, slo) is not None:
        return False
    figures = [(_number(row[column]), limit) for _, column, limit in slo_checks(slo)]
    return all(value is not None and value <= limit for value, limit in figures)


def _crossing(passed: dict[str, Any], failed: dict[str, Any], slo: SloConfig) -> tuple[float, str]:
    """Fraction of the way from `passed` to `failed` where the first latency hits its limit."""
    best, label = math.inf, ""
    for name, column, limit in slo_checks(slo):
        low, high = _number(passed[column]), _number(failed[column])
        if low is None or high is None or high <= limit or high <= low:
            continue
        fraction = (limit - low) / (high - low)
        if fraction < best:
            best, label = fraction, f"{name} > {limit:g} ms at {_where(failed)} ({high:.0f} ms)"
    return best, label


def _between(low: Any, high: Any, fraction: float) -> float | None:
    a, b = _number(low), _number(high)
    if a is None or b is None:
        return None
    return a + fraction * (b - a)


def _failure(row: dict[str, Any], slo: SloConfig) -> str:
    for name, column, limit in slo_checks(slo):
        value = _number(row[column])
        if value is not None and value > limit:
            return f"{name} > {limit:g} ms at {_where(row)} ({value:.0f} ms)"
    return ""


def capacity(rows: pd.DataFrame, slo: SloConfig) -> Capacity:
    """The SLO limit of one target from its summary rows (any order; sorted by load here)."""
    if rows.empty:
        return Capacity("", "", "not_measured", limited_by="no stage ran")
    if rows["mode"].nunique() > 1 and (rows["mode"] == "rate").any():
        rows = rows[rows["mode"] == "rate"]  # a sweep: its open-loop stages are the curve
    ordered = rows.sort_values("load", kind="stable").to_dict("records")
    target, mode = str(ordered[0]["target"]), str(ordered[0]["mode"])
    skipped = tuple(r for r in (skip_reason(row, slo) for row in ordered) if r is not None)
    measured = [row for row in ordered if skip_reason(row, slo) is None]
    if not measured:
        return Capacity(target, mode, "not_measured", limited_by="no valid stage", skipped=skipped)
    for index, row in enumerate(measured):
        if stage_meets(row, slo):
            continue
        if index == 0:
            return Capacity(target, mode, "none", limited_by=_failure(row, slo), skipped=skipped)
        passed = measured[index - 1]
        fraction, label = _crossing(passed, row, slo)
        if fraction > 1:  # no measurable crossing: stop at the last stage that met the SLO
            return Capacity(
                target,
                mode,
                "at_stage",
                _number(passed["load"]),
                _number(passed["req_per_s"]),
                _number(passed["output_tok_per_s"]),
                _failure(row, slo),
                skipped,
            )
        return Capacity(
            target,
            mode,
            "interpolated",
            _between(passed["load"], row["load"], fraction),
            _between(passed["req_per_s"], row["req_per_s"], fraction),
            _between(passed["output_tok_per_s"], row["output_tok_per_s"], fraction),
            label,
            skipped,
        )
    last = measured[-1]
    return Capacity(
        target,
        mode,
        "max_tested",
        _number(last["load"]),
        _number(last["req_per_s"]),
        _number(last["output_tok_per_s"]),
        "met the SLO at every measured load",
        skipped,
    )


def capacities(summary: pd.DataFrame, slo: SloConfig) -> dict[str, Capacity]:
    """Each target's SLO limit, in run order (one row per target × load: see `repeats`)."""
    if summary.empty:
        return {}
    return {
        str(target): capacity(rows, slo) for target, rows in summary.groupby("target", sort=False)
    }
