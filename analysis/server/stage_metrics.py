"""Per-stage server figures from the direct scrapes (no Prometheus), evaluated with Prometheus'
rules over the scrape-aligned window, so they match what `promql.py` gets from the same samples.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.server.figures import (
    QUANTILES,
    new_row,
    set_counter,
    set_gauge,
    set_histogram,
    window_notes,
)
from analysis.server.figures import to_frame as _to_frame
from analysis.server.mapping import (
    PROCESS_START,
    STACK_MAPPINGS,
    ResolvedSeries,
    mapping_for,
    resolve,
    sample_names,
)
from analysis.server.samples import Labels, label_value, load_samples, load_scrapes
from analysis.server.semantics import (
    aligned_window,
    bucket_quantile,
    changes,
    counter_increase,
    resets,
    scrape_interval,
)
from loadtest.records import StageRecord

__all__ = ["SOURCE", "load_stage_metrics", "stage_metrics_from_scrapes"]

SOURCE = "scrape"


@dataclass(frozen=True)
class _Series:
    labels: Labels
    le: float
    times: np.ndarray
    values: np.ndarray

    def between(self, start: float, end: float, *, left_open: bool = False) -> np.ndarray:
        lo = np.searchsorted(self.times, start, side="right" if left_open else "left")
        hi = np.searchsorted(self.times, end, side="right")
        return self.values[lo:hi]

    def counter(self, start: float, end: float) -> np.ndarray:
        """Values over [start, end]; a series born after `start` counts from 0 there."""
        values = self.between(start, end)
        if len(values) and self.times[np.searchsorted(self.times, start)] > start:
            values = np.concatenate([[0.0], values])
        return values


def _series_by_name(samples: pd.DataFrame) -> dict[str, list[_Series]]:
    out: dict[str, list[_Series]] = {}
    for (name, labels, le), group in samples.groupby(
        ["name", "labels", "le"], sort=False, dropna=False
    ):
        ordered = group.sort_values("wall_s")
        out.setdefault(str(name), []).append(
            _Series(
                labels,
                float(le),
                ordered["wall_s"].to_numpy(float),
                ordered["value"].to_numpy(float),
            )
        )
    return out


def _kept(series: list[_Series], spec: ResolvedSeries) -> list[_Series]:
    return [
        s
        for s in series
        if not any(label_value(s.labels, key) in values for key, values in spec.exclude)
    ]


def _increase(series: list[_Series], window: tuple[float, float]) -> float:
    parts = [counter_increase(s.counter(*window)) for s in series]
    parts = [p for p in parts if not math.isnan(p)]
    return float(sum(parts)) if parts else math.nan


def _fill(
    row: dict[str, Any],
    by_name: dict[str, list[_Series]],
    resolved: dict[str, ResolvedSeries],
    window: tuple[float, float],
) -> None:
    for key, spec in resolved.items():
        kind, name = spec.measure.kind, spec.name
        if kind == "counter":
            set_counter(row, key, _increase(_kept(by_name.get(name, []), spec), window))
        elif kind == "histogram":
            buckets: dict[float, float] = {}
            for s in _kept(by_name.get(f"{name}_bucket", []), spec):
                inc = counter_increase(s.counter(*window))
                if not math.isnan(inc):
                    buckets[s.le] = buckets.get(s.le, 0.0) + inc
            count = _increase(_kept(by_name.get(f"{name}_count", []), spec), window)
            total = _increase(_kept(by_name.get(f"{name}_sum", []), spec), window)
            quantiles = [bucket_quantile(q, buckets.items()) for q in QUANTILES]
            set_histogram(row, key, count, total, quantiles)
        elif key != PROCESS_START:
            values = [s.between(*window, left_open=True) for s in _kept(by_name[name], spec)]
            values = [v for v in values if len(v)]
            if not values:
                continue
            means, maxes = [float(v.mean()) for v in values], [float(v.max()) for v in values]
            if spec.measure.aggregate == "avg":
                set_gauge(row, key, float(np.mean(means)), max(maxes))
            else:
                set_gauge(row, key, sum(means), sum(maxes))


def _restart_reasons(
    by_name: dict[str, list[_Series]],
    resolved: dict[str, ResolvedSeries],
    window: tuple[float, float],
) -> list[str]:
    """Why the server looks restarted inside `window`: counters that went down, a new start."""
    reset = sorted(
        name
        for name in _reset_watch(resolved)
        if any(resets(s.between(*window)) for s in by_name.get(name, []))
    )
    reasons = [f"counter reset in {', '.join(reset)}"] if reset else []
    start = resolved.get(PROCESS_START)
    if start and any(changes(s.between(*window)) for s in by_name.get(start.name, [])):
        reasons.append("process_start_time_seconds changed")
    return reasons


def _reset_watch(resolved: dict[str, ResolvedSeries]) -> list[str]:
    """Counter-like names a restart resets: the counters and each histogram's `_count`."""
    kinds = {"counter": "{}", "histogram": "{}_count"}
    return [
        kinds[s.measure.kind].format(s.name) for s in resolved.values() if s.measure.kind in kinds
    ]


def stage_metrics_from_scrapes(
    samples: pd.DataFrame,
    scrapes: pd.DataFrame,
    stages: Sequence[StageRecord],
    stacks: Mapping[str, str],
) -> pd.DataFrame:
    """One row per stage (`figures.STAGE_COLUMNS`) from `load_samples`/`load_scrapes` frames.

    `stacks` maps target name → stack (`vllm`, `tgi`, `exllamav2`, `other`); a missing target
    counts as `other`, whose figures stay NaN.
    """
    rows = []
    per_target: dict[str, tuple[dict[str, list[_Series]], dict[str, ResolvedSeries]]] = {}
    for stage in stages:
        target, stack = stage.target, stacks.get(stage.target, "other")
        measure = (stage.start_wall_s + stage.warmup_s, stage.end_wall_s)
        row = new_row(target, stage.stage, stack, SOURCE, measure)
        rows.append(row)
        if target not in per_target:
            mine = samples[samples["target"] == target]
            by_name = _series_by_name(mine)
            per_target[target] = by_name, resolve(mapping_for(stack), by_name)
        by_name, resolved = per_target[target]
        log = scrapes[scrapes["target"] == target]
        ok_times = log.loc[log["ok"].astype(bool), "wall_s"].to_numpy(float)
        failed = log.loc[~log["ok"].astype(bool), "wall_s"].to_numpy(float)
        row["scrape_errors"] = int(((failed > measure[0]) & (failed <= measure[1])).sum())
        window = aligned_window(list(ok_times), *measure)
        if window is None:
            row["note"] = "fewer than two successful scrapes cover the window"
            continue
        row.update(window_start_s=window[0], window_end_s=window[1], window_s=window[1] - window[0])
        row["scrapes"] = int(((ok_times >= window[0]) & (ok_times <= window[1])).sum())
        _fill(row, by_name, resolved, window)
        reasons = _restart_reasons(by_name, resolved, window)
        row.update(restarted=bool(reasons), restart_reason="; ".join(reasons))
        row["note"] = "; ".join(window_notes(window, measure, scrape_interval(list(ok_times))))
    return _to_frame(rows)


def load_stage_metrics(
    run_dir: Path, stages: Sequence[StageRecord], stacks: Mapping[str, str]
) -> pd.DataFrame:
    """`stage_metrics_from_scrapes` over a run directory's `server_metrics.jsonl`."""
    names = set().union(*(sample_names(m) for m in STACK_MAPPINGS.values()))
    return stage_metrics_from_scrapes(
        load_samples(run_dir, names), load_scrapes(run_dir), stages, stacks
    )
