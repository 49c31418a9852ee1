"""Nights in a row (pure): each figure's trend across runs, where it changed, and odd nights.

Input: one summary per night (summary.csv's rows, validity decided), ordered by start time.
For each target × stage × metric (`analysis.regression.METRICS`; the SLO limit per target) a
series over nights; an invalid stage is a gap, never a value.

- **Noise** σ of a series: the larger of its night-to-night noise (1.4826 · MAD of successive
  differences ÷ √2, which a step does not inflate) and the median of the nights' own
  standard errors (a latency percentile's order-statistic interval ÷ 3.92, from summary.csv):
  a dozen nights alone estimate σ too loosely to trust.
- **Change points**: `ruptures`' PELT search (exact, penalised) for shifts in the mean of the
  series standardised by σ, with segments of at least `MIN_SEGMENT` nights. On that scale
  splitting a segment lowers the l2 cost by exactly t², t the two-sample statistic of the
  shift (Δ ÷ σ√(1/n₁ + 1/n₂)), so a penalty of `T_MIN`² per change keeps only shifts with
  t ≥ `T_MIN`. A change is then kept only when the mean moved by at least the metric's
  threshold (the gate's `Thresholds`: 5% latency, 3% throughput, 0.5 points of errors), so
  a real but harmless drift is not a finding. A change point is named by the first night of
  the new level. A level of fewer than `LASTING` nights between two equal ones is an
  excursion, not two changes: its nights are judged as suspects instead.
- **Suspect nights**: a night farther from the median of the (up to `RECENT`) nights before
  it on the same level than both the threshold and `SUSPECT_SIGMAS` · σ: a one-off, not a
  new level (one night cannot form a segment).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import ruptures

from analysis.capacity import capacities
from analysis.config import SloConfig, percentile_word
from analysis.regression import METRICS, MetricSpec
from analysis.repeats import by_load
from analysis.summary import stat_column
from analysis.thresholds import Thresholds
from loadtest.order_stats import Z95

__all__ = [
    "HISTORY_COLUMNS",
    "LASTING",
    "MIN_SEGMENT",
    "RECENT",
    "SUSPECT_SIGMAS",
    "T_MIN",
    "Night",
    "Series",
    "change_points",
    "history",
    "noise_sigma",
    "suspects",
]

MIN_SEGMENT = 2
LASTING = 3
T_MIN = 5.0
RECENT = 5
SUSPECT_SIGMAS = 6.0
_MIN_NIGHTS = 4  # fewer nights than this: no change point search, no suspects

HISTORY_COLUMNS = [
    "night",
    "run",
    "started_at",
    "target",
    "stage",
    "load",
    "mode",
    "metric",
    "label",
    "unit",
    "value",
    "valid",
    "change_point",
    "level_change",
    "suspect",
    "simulated",
]
"""history.csv: one row per night × target × stage × metric. `night` counts from 1 in start
order; `change_point` marks the first night of a new level and `level_change` is that
level's mean over the previous one's, minus 1 (0.08 = +8%; points for the error rate)."""


@dataclass(frozen=True)
class Night:
    """One run: its summary rows and what orders and names it."""

    run: str
    started_at: str
    summary: pd.DataFrame
    slo: SloConfig


@dataclass(frozen=True)
class Series:
    target: str
    stage: int | None
    spec: MetricSpec
    values: np.ndarray  # one per night; NaN where the stage was invalid or missing
    errors: np.ndarray  # each night's standard error of its value, NaN where unknown


def noise_sigma(values: np.ndarray, errors: np.ndarray | None = None) -> float:
    """Noise of a series (see the module): robust to level shifts and single outliers."""
    finite = values[np.isfinite(values)]
    if len(finite) < 3:
        return 0.0
    diffs = np.diff(finite)
    mad = float(np.median(np.abs(diffs - np.median(diffs))))
    sigma = 1.4826 * mad / math.sqrt(2)
    if errors is not None and np.isfinite(errors).any():
        sigma = max(sigma, float(np.nanmedian(errors)))
    centre = abs(float(np.median(finite)))
    return max(sigma, 1e-3 * centre if centre else 1e-9)


def _relative(after: float, before: float, spec: MetricSpec) -> float:
    if spec.group == "error_rate":
        return after - before
    return after / before - 1 if before else math.inf


def change_points(
    values: np.ndarray, spec: MetricSpec, threshold: float, sigma: float
) -> dict[int, float]:
    """0-based night index of each new level → its relative change (see the module)."""
    index = np.flatnonzero(np.isfinite(values))
    series = values[index]
    if len(series) < _MIN_NIGHTS or sigma <= 0:
        return {}
    signal = ((series - float(np.median(series))) / sigma).reshape(-1, 1)
    search = ruptures.Pelt(model="l2", min_size=MIN_SEGMENT, jump=1).fit(signal)
    edges = [0, *search.predict(pen=T_MIN**2)]
    edges = _without_excursions(series, edges, spec, threshold)
    found: dict[int, float] = {}
    for k in range(1, len(edges) - 1):
        before = float(np.mean(series[edges[k - 1] : edges[k]]))
        after = float(np.mean(series[edges[k] : edges[k + 1]]))
        change = _relative(after, before, spec)
        if abs(change) >= threshold:
            found[int(index[edges[k]])] = change
    return found


def _without_excursions(
    series: np.ndarray, edges: list[int], spec: MetricSpec, threshold: float
) -> list[int]:
    """Segment edges less any short inner segment (under `LASTING` nights) whose neighbours
    share a level: a night or two away and back is a suspect night, not two changes."""
    k = 1
    while k < len(edges) - 2:
        short = edges[k + 1] - edges[k] < LASTING
        before = float(np.mean(series[edges[k - 1] : edges[k]]))
        after = float(np.mean(series[edges[k + 1] : edges[k + 2]]))
        if short and abs(_relative(after, before, spec)) < threshold:
            del edges[k : k + 2]
            continue
        k += 1
    return edges


def suspects(
    values: np.ndarray, changes: dict[int, float], threshold: float, spec: MetricSpec, sigma: float
) -> set[int]:
    """0-based nights far from the recent median of their own level (see the module)."""
    flagged: set[int] = set()
    level_start = 0
    for night, value in enumerate(values):
        if night in changes:
            level_start = night
            continue
        if not np.isfinite(value):
            continue
        before = values[max(level_start, night - RECENT) : night]
        before = before[np.isfinite(before)]
        if len(before) < 3:
            continue
        median = float(np.median(before))
        gap = abs(_relative(float(value), median, spec))
        if gap >= threshold and abs(value - median) > SUSPECT_SIGMAS * sigma:
            flagged.add(night)
    return flagged


def _interval_columns(spec: MetricSpec) -> tuple[str, str] | None:
    """summary.csv's order-statistic interval of a latency percentile, if it has one."""
    if spec.latency is None or spec.q is None:
        return None
    word = percentile_word(100 * spec.q)
    return tuple(stat_column(spec.latency, "", f"p{word}_{b}") for b in ("lo", "hi"))  # type: ignore[return-value]


def _number(rows: pd.DataFrame, column: str) -> float:
    if column not in rows:
        return math.nan
    return float(pd.to_numeric(rows[column], errors="coerce").iloc[-1])


def _stage_values(
    nights: list[Night], spec: MetricSpec
) -> dict[tuple[str, int], tuple[np.ndarray, np.ndarray]]:
    keys: dict[tuple[str, int], None] = {}
    for night in nights:
        for r in night.summary.itertuples():
            keys[(str(r.target), int(r.stage))] = None
    interval = _interval_columns(spec)
    out = {}
    for key in keys:
        values, errors = np.full(len(nights), np.nan), np.full(len(nights), np.nan)
        for i, night in enumerate(nights):
            s = night.summary
            rows = s[(s["target"] == key[0]) & (s["stage"] == key[1]) & s["valid"].astype(bool)]
            if not len(rows):
                continue
            values[i] = _number(rows, spec.column)
            if interval is not None:
                errors[i] = (_number(rows, interval[1]) - _number(rows, interval[0])) / (2 * Z95)
        out[key] = (values, errors)
    return out


def _capacity_values(nights: list[Night]) -> dict[str, np.ndarray]:
    per_night = [capacities(by_load(n.summary), n.slo) for n in nights]
    targets = list(dict.fromkeys(t for caps in per_night for t in caps))
    out = {}
    for target in targets:
        values = np.full(len(nights), np.nan)
        for i, caps in enumerate(per_night):
            cap = caps.get(target)
            if cap is not None and cap.status == "none":
                values[i] = 0.0
            elif cap is not None and cap.sustains and cap.load is not None:
                values[i] = cap.load
        out[target] = values
    return out


def _series(nights: list[Night], metrics: list[str]) -> list[Series]:
    found = []
    for name in metrics:
        spec = METRICS[name]
        if name == "capacity":
            for target, values in _capacity_values(nights).items():
                found.append(Series(target, None, spec, values, np.full(len(values), np.nan)))
            continue
        for (target, stage), (values, errors) in _stage_values(nights, spec).items():
            found.append(Series(target, stage, spec, values, errors))
    return found


def _stage_info(nights: list[Night], target: str, stage: int | None) -> tuple[object, object, bool]:
    for night in reversed(nights):
        s = night.summary
        rows = (
            s[s["target"] == target]
            if stage is None
            else s[(s["target"] == target) & (s["stage"] == stage)]
        )
        if len(rows):
            row = rows.iloc[-1]
            return (None if stage is None else row["load"]), row["mode"], bool(row["simulated"])
    return None, None, False


def history(
    nights: list[Night], thresholds: Thresholds | None = None, metrics: list[str] | None = None
) -> pd.DataFrame:
    """`HISTORY_COLUMNS` rows, by target, stage, metric and night (nights in the given order)."""
    thresholds = thresholds or Thresholds()
    rows = []
    for series in _series(nights, metrics or list(METRICS)):
        spec = series.spec
        threshold = thresholds.percent(series.target, spec.name, spec.group) / 100
        sigma = noise_sigma(series.values, series.errors)
        changes = change_points(series.values, spec, threshold, sigma)
        odd = suspects(series.values, changes, threshold, spec, sigma)
        load, mode, simulated = _stage_info(nights, series.target, series.stage)
        for i, night in enumerate(nights):
            value = series.values[i]
            rows.append(
                {
                    "night": i + 1,
                    "run": night.run,
                    "started_at": night.started_at,
                    "target": series.target,
                    "stage": series.stage,
                    "load": load,
                    "mode": mode,
                    "metric": spec.name,
                    "label": spec.label,
                    "unit": spec.unit,
                    "value": None if math.isnan(value) else float(value),
                    "valid": not math.isnan(value),
                    "change_point": i in changes,
                    "level_change": changes.get(i),
                    "suspect": i in odd,
                    "simulated": simulated,
                }
            )
    return pd.DataFrame(rows, columns=HISTORY_COLUMNS)
