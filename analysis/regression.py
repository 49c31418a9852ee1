"""Two runs of the same benchmark, figure by figure (pure): the regression gate's verdicts.

For each target × stage in both runs and each metric (`METRICS`), the change from the base
run to the new one with a 95% interval from both runs' raw per-request records
(`analysis.change`), and a verdict against the metric's threshold (`analysis.thresholds`):

- **regressed**: the whole interval lies beyond the threshold on the worse side;
- **improved**: the whole interval lies beyond it on the better side;
- **unchanged**: the whole interval lies within ± the threshold;
- **inconclusive**: the interval reaches past the threshold (too few samples to decide), or
  the figure has too few samples at all.

The SLO limit ("max load within the SLO", `capacity`) is one figure per target: its interval
is the capacity found with every stage's SLO percentiles at the low and at the high end of
their order-statistic intervals (summary.csv's `_lo`/`_hi` columns), combined as an interval
ratio (new low ÷ base high … new high ÷ base low).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from analysis.capacity import Capacity, capacities
from analysis.change import (
    Change,
    bin_count,
    error_rate_change,
    percentile_changes,
    seed_of,
    throughput_change,
    time_bins,
)
from analysis.config import SloConfig, percentile_word
from analysis.repeats import by_load
from analysis.summary import StageRequests, stat_column
from analysis.thresholds import MetricGroup, Thresholds
from loadtest.records import StageRecord

__all__ = [
    "CHANGE_COLUMNS",
    "METRICS",
    "VERDICTS",
    "MetricSpec",
    "RunFigures",
    "Verdict",
    "compare_runs",
    "decide",
    "invalid_stages",
]

Verdict = Literal["regressed", "improved", "unchanged", "inconclusive"]
VERDICTS: tuple[Verdict, ...] = ("regressed", "inconclusive", "improved", "unchanged")
"""In the order the table shows them: regressions first."""


@dataclass(frozen=True)
class MetricSpec:
    """One compared figure: `latency` metrics are percentiles of a per-request latency."""

    name: str
    label: str
    group: MetricGroup
    unit: str
    higher_is_better: bool
    column: str  # summary.csv's column of the figure
    latency: str | None = None  # ttft | tpot | itl | e2e
    q: float | None = None


def _latency(metric: str, p: float) -> MetricSpec:
    word = percentile_word(p)
    return MetricSpec(
        f"{metric}_p{word}",
        f"{metric.upper()} p{word}",
        "latency",
        "ms",
        False,
        f"{metric}_p{word}_ms",
        metric,
        p / 100,
    )


METRICS: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in [
        *(_latency(m, p) for m in ("ttft", "tpot", "itl", "e2e") for p in (50.0, 95.0)),
        MetricSpec(
            "output_tok_per_s", "output tok/s", "throughput", "tok/s", True, "output_tok_per_s"
        ),
        MetricSpec("req_per_s", "req/s", "throughput", "req/s", True, "req_per_s"),
        MetricSpec(
            "goodput_req_per_s", "goodput", "throughput", "req/s", True, "goodput_req_per_s"
        ),
        MetricSpec("error_rate", "error rate", "error_rate", "%", False, "error_rate"),
        MetricSpec("capacity", "max load within SLO", "throughput", "load", True, "load"),
    ]
}

CHANGE_COLUMNS = [
    "target",
    "stage",
    "load",
    "mode",
    "metric",
    "label",
    "unit",
    "base",
    "new",
    "change",
    "low",
    "high",
    "threshold",
    "verdict",
    "reason",
    "n_base",
    "n_new",
    "method",
]
"""One row per target × stage × metric. `change`, `low`, `high` and `threshold` are relative
(0.05 = +5%) except for the error rate, where they are differences of proportions (0.005 =
+0.5 points). `stage` is empty for the per-target capacity."""


@dataclass(frozen=True)
class RunFigures:
    """What the gate needs of one run: its summary rows (validity decided), the grouped
    records, each record's scheduled time, and its stage windows."""

    summary: pd.DataFrame
    records: StageRequests
    scheduled_ns: np.ndarray
    stages: dict[tuple[str, int], StageRecord]
    slo: SloConfig

    @classmethod
    def of(
        cls,
        summary: pd.DataFrame,
        records: StageRequests,
        requests: pd.DataFrame,
        stages: list[StageRecord],
        slo: SloConfig,
    ) -> RunFigures:
        scheduled = np.asarray(pd.to_numeric(requests["scheduled_ns"]), dtype=np.int64)
        windows = {(s.target, s.stage): s for s in stages}
        return cls(summary, records, scheduled, windows, slo)

    def row(self, target: str, stage: int) -> dict[str, Any] | None:
        rows = self.summary[(self.summary["target"] == target) & (self.summary["stage"] == stage)]
        return rows.iloc[-1].to_dict() if len(rows) else None


def decide(change: Change, threshold: float, higher_is_better: bool) -> tuple[Verdict, str]:
    """The verdict of one change against its threshold (both on the change's scale)."""
    low, high = (-change.high, -change.low) if higher_is_better else (change.low, change.high)
    if low > threshold:
        return "regressed", "the whole interval is beyond the threshold"
    if high < -threshold:
        return "improved", "the whole interval is beyond the threshold"
    if low >= -threshold and high <= threshold:
        return "unchanged", "the whole interval is within the threshold"
    return "inconclusive", "the interval reaches past the threshold: too few samples to decide"


def invalid_stages(
    base: RunFigures, new: RunFigures, keys: list[tuple[str, int]]
) -> list[tuple[str, str, int, str]]:
    """(which run, target, stage, why) for each compared stage that is invalid in either run."""
    found = []
    for side, figures in (("base", base), ("new", new)):
        for target, stage in keys:
            row = figures.row(target, stage)
            if row is not None and not bool(row["valid"]):
                found.append((side, target, stage, str(row.get("invalid_reason") or "invalid")))
    return found


def _stage_keys(base: RunFigures, new: RunFigures) -> list[tuple[str, int]]:
    """Target × stage present in both runs, in the new run's order."""
    mine = {(str(r.target), int(r.stage)) for r in base.summary.itertuples()}
    return [
        (str(r.target), int(r.stage))
        for r in new.summary.itertuples()
        if (str(r.target), int(r.stage)) in mine
    ]


_Changes = dict[tuple[str, int, str], list[Change | str]]


def _latency_changes(
    specs: list[MetricSpec], base: RunFigures, new: RunFigures, target: str, stage: int
) -> dict[str, Change | str]:
    """Every latency metric of one stage, each latency's values gathered once per run and
    all its percentiles found in one pass."""
    out: dict[str, Change | str] = {}
    by_latency: dict[str, list[MetricSpec]] = {}
    for spec in specs:
        if spec.latency is not None:
            by_latency.setdefault(spec.latency, []).append(spec)
    for latency, mine in by_latency.items():
        sides = []
        for figures in (base, new):
            rows = figures.records.of(target, stage)
            values = figures.records.metric(latency, rows)
            # pooled gaps: as many independent units as the ok requests that produced them
            units = int(figures.records.ok[rows].sum()) if latency == "itl" else None
            sides.append((values, units))
        (a, n_a), (b, n_b) = sides
        qs = [float(spec.q) for spec in mine if spec.q is not None]
        found = percentile_changes(
            a, b, qs, n_base=n_a, n_new=n_b, seed=seed_of(target, stage, latency)
        )
        out.update({spec.name: change for spec, change in zip(mine, found, strict=True)})
    return out


def _bins(figures: RunFigures, spec: MetricSpec, target: str, stage: int) -> np.ndarray:
    window = figures.stages[(target, stage)]
    rows = figures.records.of(target, stage)
    rec = figures.records
    if spec.name == "output_tok_per_s":
        weights = np.where(rec.ok[rows], np.nan_to_num(rec.tokens[rows]), 0.0)
    elif spec.name == "goodput_req_per_s":
        weights = rec.meets[rows].astype(float)
    else:
        weights = rec.ok[rows].astype(float)
    start = window.start_ns + int(window.warmup_s * 1e9)
    count = bin_count(int(rec.ok[rows].sum()))
    if count == 0:
        return np.empty(0)
    return time_bins(figures.scheduled_ns[rows], weights, start, window.end_ns, count)


def _throughput_change(
    spec: MetricSpec, base: RunFigures, new: RunFigures, target: str, stage: int
) -> Change | str:
    a, b = _bins(base, spec, target, stage), _bins(new, spec, target, stage)
    return throughput_change(a, b, seed=seed_of(target, stage, spec.name))


def _error_change(base_row: dict[str, Any], new_row: dict[str, Any]) -> Change | str:
    return error_rate_change(
        int(base_row["errors"]),
        int(base_row["requests"]),
        int(new_row["errors"]),
        int(new_row["requests"]),
    )


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if np.isnan(number) else number


def _row(
    spec: MetricSpec,
    target: str,
    stage: int | None,
    base_row: dict[str, Any],
    new_row: dict[str, Any],
    found: Change | str,
    threshold: float,
) -> dict[str, Any]:
    row = {
        "target": target,
        "stage": stage,
        "load": base_row.get("load") if stage is not None else None,
        "mode": base_row.get("mode"),
        "metric": spec.name,
        "label": spec.label,
        "unit": spec.unit,
        "base": _number(base_row.get(spec.column)),
        "new": _number(new_row.get(spec.column)),
        "threshold": threshold,
    }
    if isinstance(found, str):
        return row | {
            "change": None,
            "low": None,
            "high": None,
            "verdict": "inconclusive",
            "reason": found,
            "n_base": None,
            "n_new": None,
            "method": None,
        }
    verdict, why = decide(found, threshold, spec.higher_is_better)
    return row | {
        "change": found.value,
        "low": found.low,
        "high": found.high,
        "verdict": verdict,
        "reason": why,
        "n_base": found.n_base,
        "n_new": found.n_new,
        "method": found.method,
    }


def _capacity_bounds(summary: pd.DataFrame, slo: SloConfig) -> dict[str, tuple[Capacity, ...]]:
    """Each target's capacity as measured, and with every SLO percentile at the high end of
    its interval (pessimistic) and at the low end (optimistic)."""
    per_load = by_load(summary)
    sides = [per_load]
    for bound in ("hi", "lo"):
        shifted = per_load.copy()
        for objective in slo.objectives():
            column = stat_column(
                objective.metric, "", f"p{percentile_word(objective.percentile)}_{bound}"
            )
            if column in shifted:
                shifted[objective.column] = shifted[column]
        sides.append(shifted)
    found = [capacities(side, slo) for side in sides]
    return {target: tuple(side[target] for side in found) for target in found[0]}


def _capacity_load(cap: Capacity) -> float | None:
    if cap.status == "none":
        return 0.0
    return cap.load if cap.sustains else None


def _capacity_change(
    base: tuple[Capacity, ...], new: tuple[Capacity, ...]
) -> tuple[Change | str, float | None, float | None]:
    (b, b_pess, b_opt), (n, n_pess, n_opt) = base, new
    point_b, point_n = _capacity_load(b), _capacity_load(n)
    if point_b is None or point_n is None:
        return "not measured (no valid stage) in one of the runs", point_b, point_n
    if point_b == 0:
        if point_n == 0:
            return Change(0.0, 0.0, 0.0, 1, 1, "SLO limit bounds"), 0.0, 0.0
        return Change(np.inf, np.inf, np.inf, 1, 1, "SLO limit bounds"), 0.0, point_n
    low_n, high_n = _capacity_load(n_pess) or 0.0, _capacity_load(n_opt) or point_n
    low_b, high_b = _capacity_load(b_pess) or 0.0, _capacity_load(b_opt) or point_b
    low = low_n / high_b - 1 if high_b else -1.0
    high = high_n / low_b - 1 if low_b else np.inf
    change = point_n / point_b - 1
    return (
        Change(change, min(low, change), max(high, change), 1, 1, "SLO limit bounds"),
        (point_b),
        point_n,
    )


def compare_runs(
    base: RunFigures,
    new: RunFigures,
    thresholds: Thresholds | None = None,
    metrics: list[str] | None = None,
) -> pd.DataFrame:
    """`CHANGE_COLUMNS` rows for every target × stage in both runs and every metric, plus
    each target's capacity; regressions first (`VERDICTS` order), then in run order."""
    thresholds = thresholds or Thresholds()
    specs = [METRICS[name] for name in (metrics or list(METRICS))]
    rows = []
    for target, stage in _stage_keys(base, new):
        base_row, new_row = base.row(target, stage), new.row(target, stage)
        assert base_row is not None and new_row is not None
        latencies = _latency_changes(specs, base, new, target, stage)
        for spec in specs:
            if spec.name == "capacity":
                continue
            threshold = thresholds.percent(target, spec.name, spec.group) / 100
            found: Change | str
            if spec.group == "latency":
                found = latencies[spec.name]
            elif spec.group == "throughput":
                found = _throughput_change(spec, base, new, target, stage)
            else:
                found = _error_change(base_row, new_row)
            rows.append(_row(spec, target, stage, base_row, new_row, found, threshold))
    if "capacity" in [s.name for s in specs]:
        spec = METRICS["capacity"]
        base_caps = _capacity_bounds(base.summary, base.slo)
        new_caps = _capacity_bounds(new.summary, new.slo)
        for target in [t for t in new_caps if t in base_caps]:
            found, point_b, point_n = _capacity_change(base_caps[target], new_caps[target])
            threshold = thresholds.percent(target, spec.name, spec.group) / 100
            mode = base_caps[target][0].mode
            row = _row(spec, target, None, {"mode": mode}, {}, found, threshold)
            rows.append(row | {"base": point_b, "new": point_n})
    table = pd.DataFrame(rows, columns=CHANGE_COLUMNS)
    table["_rank"] = table["verdict"].map({v: i for i, v in enumerate(VERDICTS)})
    table = table.sort_values("_rank", kind="stable").drop(columns="_rank")
    return table.reset_index(drop=True)
