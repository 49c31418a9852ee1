"""The highest load each target sustains within an SLO, interpolated between its stages (pure).

A stage meets the SLO when it is valid and each p95 in the SLO is within its limit. Walking a
target's stages by load, the limit lies between the last stage that meets it and the first
that does not; it is placed where the first latency crosses its limit, linearly in load.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd

from analysis.config import SloConfig

__all__ = [
    "Capacity",
    "CapacityStatus",
    "capacities",
    "capacity",
    "load_unit",
    "slo_checks",
    "slo_text",
    "stage_meets",
]

CapacityStatus = Literal["interpolated", "at_stage", "max_tested", "none", "no_data"]


@dataclass(frozen=True)
class Capacity:
    """Where a target's SLO limit lies, in offered load and in what it achieved there.

    status: `interpolated` between two stages; `at_stage`, the last passing stage (the next
    failed without a measurable crossing, e.g. it was invalid); `max_tested`, every stage met
    the SLO so the limit is at least the highest load tested; `none`, the lowest stage failed;
    `no_data`, no stages.
    """

    target: str
    mode: str
    status: CapacityStatus
    load: float | None = None
    req_per_s: float | None = None
    output_tok_per_s: float | None = None
    limited_by: str = ""

    @property
    def sustains(self) -> bool:
        return self.status in ("interpolated", "at_stage", "max_tested")

    @property
    def lower_bound(self) -> bool:
        """True when the real limit lies above the tested loads (every stage passed)."""
        return self.status == "max_tested"

    def text(self, figure: str = "load", unit: str = "", *, note: bool = True) -> str:
        """`≈ 23.4`, `16`, `≥ 48 (max tested)`, `none` or `n/a` for `load`, `req_per_s` or
        `output_tok_per_s`, with `unit` after the number (`note=False`: no "(max tested)")."""
        if self.status == "none":
            return "none"
        value = getattr(self, figure)
        if value is None or self.status == "no_data":
            return "n/a"
        number = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
        number += f" {unit}" if unit else ""
        if self.status == "max_tested":
            return f"≥ {number} (max tested)" if note else f"≥ {number}"
        if self.status == "interpolated":
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
            "text": self.text(),
        }


def load_unit(mode: str) -> str:
    return {"concurrency": "concurrency", "rate": "req/s offered", "batch": "batch size"}.get(
        mode, "load"
    )


def slo_checks(slo: SloConfig) -> list[tuple[str, str, float]]:
    """(label, summary column, limit in ms) for each p95 objective the SLO sets."""
    checks = (
        ("TTFT", "ttft", slo.ttft_ms),
        ("TPOT", "tpot", slo.tpot_ms),
        ("E2E", "e2e", slo.e2e_ms),
    )
    return [(f"{label} p95", f"{metric}_p95_ms", limit) for label, metric, limit in checks if limit]


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


def stage_meets(row: pd.Series | dict[str, Any], slo: SloConfig) -> bool:
    """Valid, and every p95 the SLO names is known and within its limit."""
    if not bool(row["valid"]):
        return False
    for _, column, limit in slo_checks(slo):
        value = _number(row[column])
        if value is None or value > limit:
            return False
    return True


def _crossing(passed: dict[str, Any], failed: dict[str, Any], slo: SloConfig) -> tuple[float, str]:
    """Fraction of the way from `passed` to `failed` where the first latency hits its limit."""
    best, label = math.inf, ""
    for name, column, limit in slo_checks(slo):
        low, high = _number(passed[column]), _number(failed[column])
        if low is None or high is None or high <= limit or high <= low:
            continue
        fraction = (limit - low) / (high - low)
        if fraction < best:
            best, label = fraction, f"{name} > {limit:g} ms at {failed['load']:g} ({high:.0f} ms)"
    return best, label


def _between(low: Any, high: Any, fraction: float) -> float | None:
    a, b = _number(low), _number(high)
    if a is None or b is None:
        return None
    return a + fraction * (b - a)


def _failure(row: dict[str, Any], slo: SloConfig) -> str:
    if not bool(row["valid"]):
        return f"stage at {row['load']:g} invalid: {row.get('invalid_reason') or 'see validity'}"
    for name, column, limit in slo_checks(slo):
        value = _number(row[column])
        if value is None:
            return f"{name} unknown at {row['load']:g} (too few samples)"
        if value > limit:
            return f"{name} > {limit:g} ms at {row['load']:g} ({value:.0f} ms)"
    return ""


def capacity(rows: pd.DataFrame, slo: SloConfig) -> Capacity:
    """The SLO limit of one target from its summary rows (any order; sorted by load here)."""
    if rows.empty:
        return Capacity("", "", "no_data")
    ordered = rows.sort_values("load", kind="stable").to_dict("records")
    target, mode = str(ordered[0]["target"]), str(ordered[0]["mode"])
    for index, row in enumerate(ordered):
        if stage_meets(row, slo):
            continue
        if index == 0:
            return Capacity(target, mode, "none", limited_by=_failure(row, slo))
        passed = ordered[index - 1]
        fraction, label = _crossing(passed, row, slo) if bool(row["valid"]) else (math.inf, "")
        if fraction > 1:  # no measurable crossing: stop at the last stage that met the SLO
            return Capacity(
                target,
                mode,
                "at_stage",
                _number(passed["load"]),
                _number(passed["req_per_s"]),
                _number(passed["output_tok_per_s"]),
                _failure(row, slo),
            )
        return Capacity(
            target,
            mode,
            "interpolated",
            _between(passed["load"], row["load"], fraction),
            _between(passed["req_per_s"], row["req_per_s"], fraction),
            _between(passed["output_tok_per_s"], row["output_tok_per_s"], fraction),
            label,
        )
    last = ordered[-1]
    return Capacity(
        target,
        mode,
        "max_tested",
        _number(last["load"]),
        _number(last["req_per_s"]),
        _number(last["output_tok_per_s"]),
        "met the SLO at every tested load",
    )


def capacities(summary: pd.DataFrame, slo: SloConfig) -> dict[str, Capacity]:
    """Each target's SLO limit, in run order."""
    if summary.empty:
        return {}
    return {
        str(target): capacity(rows, slo) for target, rows in summary.groupby("target", sort=False)
    }
