"""Per-stage server figures from a Prometheus server, in the same row type as the direct path,
evaluated over the scrape-aligned window so `increase()` has nothing to extrapolate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

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
from analysis.server.mapping import PROCESS_START, ResolvedSeries, mapping_for, resolve
from analysis.server.prom_client import PrometheusClient, PrometheusError
from analysis.server.semantics import aligned_window, scrape_interval
from loadtest.records import StageRecord

__all__ = ["SOURCE", "PromTarget", "selector_for_url", "stage_metrics_from_prometheus"]

SOURCE = "prometheus"
_LOOKBACK_S = 300.0  # how far before a stage to look for the scrape that opens it (5m)


@dataclass(frozen=True)
class PromTarget:
    """A target's stack and the PromQL label matchers of its series in Prometheus, e.g.
    `service="vllm-awq"` (compose) or `instance="127.0.0.1:8000"` (`selector_for_url`)."""

    stack: str
    selector: str

    def __post_init__(self) -> None:
        if not self.selector.strip():
            raise ValueError('a Prometheus target needs a selector, e.g. instance="host:port"')


def selector_for_url(metrics_url: str) -> str:
    """`instance="host:port"`, the label Prometheus gives a static target's series."""
    parts = urlsplit(metrics_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f'instance="{parts.hostname}:{port}"'


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _selector(name: str, selector: str, spec: ResolvedSeries | None = None) -> str:
    matchers = [selector]
    for label, values in spec.exclude if spec else ():
        matchers.append(f'{label}!~"{"|".join(values)}"')
    return f"{name}{{{','.join(matchers)}}}"


@dataclass(frozen=True)
class _Window:
    """Evaluation time and the two ranges, in milliseconds, for one stage of one target."""

    at_ms: int
    counter_ms: int  # covers [s0, s1]: increase(), resets(), changes()
    gauge_ms: int  # covers (s0, s1]: avg_over_time(), max_over_time()

    @property
    def at_s(self) -> float:
        return self.at_ms / 1000


def _window(window: tuple[float, float], left_open: bool) -> _Window:
    # Evaluated at s1, Prometheus' last successful scrape of the target inside the measure
    # window, over a range reaching back exactly to s0, its last one at or before the window
    # start: increase() then has samples on both edges and equals the direct path's
    # reset-corrected difference. Prometheus 2.x ranges are [t - r, t], Prometheus 3 ranges
    # (t - r, t]: reach 1 ms past s0 for counters (on 3, a 1 ms extrapolation: < 0.05% of a
    # 2 s window) and stop 1 ms short of it for gauges (2.x), so both take the same samples.
    start, end = _ms(window[0]), _ms(window[1])
    return _Window(end, end - start + left_open, end - start - (not left_open))


def _fill(
    row: dict[str, Any],
    client: PrometheusClient,
    resolved: dict[str, ResolvedSeries],
    selector: str,
    w: _Window,
) -> None:
    rng, grng = f"[{w.counter_ms}ms]", f"[{w.gauge_ms}ms]"

    def value(expr: str) -> float:
        return client.query_value(expr, w.at_s)

    for key, spec in resolved.items():
        kind, name = spec.measure.kind, spec.name
        if kind == "counter":
            inc = value(f"sum(increase({_selector(name, selector, spec)}{rng}))")
            set_counter(row, key, inc)
        elif kind == "histogram":
            buckets = f"sum by (le) (increase({_selector(name + '_bucket', selector, spec)}{rng}))"
            count = value(f"sum(increase({_selector(name + '_count', selector, spec)}{rng}))")
            total = value(f"sum(increase({_selector(name + '_sum', selector, spec)}{rng}))")
            quantiles = [value(f"histogram_quantile({q}, {buckets})") for q in QUANTILES]
            set_histogram(row, key, count, total, quantiles)
        elif key != PROCESS_START:
            series = _selector(name, selector, spec)
            outer = "avg" if spec.measure.aggregate == "avg" else "sum"
            top = "max" if spec.measure.aggregate == "avg" else "sum"
            mean = value(f"{outer}(avg_over_time({series}{grng}))")
            if not math.isnan(mean):
                set_gauge(row, key, mean, value(f"{top}(max_over_time({series}{grng}))"))


def _restart_reasons(
    client: PrometheusClient, resolved: dict[str, ResolvedSeries], selector: str, w: _Window
) -> list[str]:
    rng = f"[{w.counter_ms}ms]"
    watch = {"counter": "{}", "histogram": "{}_count"}
    names = [
        watch[s.measure.kind].format(s.name) for s in resolved.values() if s.measure.kind in watch
    ]
    reset = sorted(
        name
        for name in names
        if client.query_value(f"sum(resets({_selector(name, selector)}{rng}))", w.at_s) > 0
    )
    reasons = [f"counter reset in {', '.join(reset)}"] if reset else []
    start = resolved.get(PROCESS_START)
    if start:
        expr = f"sum(changes({_selector(start.name, selector)}{rng}))"
        if client.query_value(expr, w.at_s) > 0:
            reasons.append("process_start_time_seconds changed")
    return reasons


def _scrape_times(
    client: PrometheusClient, selector: str, measure: tuple[float, float]
) -> tuple[list[float], list[float]]:
    """Times of Prometheus' successful and failed scrapes of the target (`up` 1 / 0)."""
    span = _ms(measure[1] - measure[0] + _LOOKBACK_S)
    result = client.query_matrix(f"{_selector('up', selector)}[{span}ms]", measure[1])
    if len(result) > 1:
        raise PrometheusError(f"{{{selector}}} matches {len(result)} scrape targets, not one")
    samples = result[0][1] if result else []
    return [t for t, v in samples if v == 1], [t for t, v in samples if v != 1]


def stage_metrics_from_prometheus(
    client: PrometheusClient,
    stages: Sequence[StageRecord],
    targets: Mapping[str, PromTarget],
) -> pd.DataFrame:
    """One row per stage (`figures.STAGE_COLUMNS`, `source="prometheus"`).

    Stages of targets missing from `targets` get a row of NaN figures with a note. Raises
    `PrometheusError` if Prometheus cannot be queried.
    """
    left_open = client.left_open_ranges()
    rows = []
    for stage in stages:
        measure = (stage.start_wall_s + stage.warmup_s, stage.end_wall_s)
        target = targets.get(stage.target)
        row = new_row(
            stage.target, stage.stage, target.stack if target else "other", SOURCE, measure
        )
        rows.append(row)
        if target is None:
            row["note"] = "target not known to Prometheus"
            continue
        ok_times, failed = _scrape_times(client, target.selector, measure)
        row["scrape_errors"] = sum(1 for t in failed if measure[0] < t <= measure[1])
        window = aligned_window(ok_times, *measure)
        if window is None:
            row["note"] = "fewer than two successful scrapes cover the window"
            continue
        row.update(window_start_s=window[0], window_end_s=window[1], window_s=window[1] - window[0])
        row["scrapes"] = sum(1 for t in ok_times if window[0] <= t <= window[1])
        names = client.label_values("__name__", f"{{{target.selector}}}", *window)
        resolved = resolve(mapping_for(target.stack), names)
        w = _window(window, left_open)
        _fill(row, client, resolved, target.selector, w)
        reasons = _restart_reasons(client, resolved, target.selector, w)
        row.update(restarted=bool(reasons), restart_reason="; ".join(reasons))
        row["note"] = "; ".join(window_notes(window, measure, scrape_interval(ok_times)))
    return _to_frame(rows)
