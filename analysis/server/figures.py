"""The per-stage server figures: one row type that both the direct-scrape and the PromQL path
fill, so the analysis can use either (and tests can compare them column by column).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from analysis.server.mapping import COUNTER_MEASURES, GAUGE_MEASURES, HISTOGRAM_MEASURES

__all__ = [
    "COUNT_COLUMNS",
    "QUANTILES",
    "QUANTILE_METHOD",
    "STAGE_COLUMNS",
    "counter_column",
    "histogram_prefix",
    "new_row",
    "set_counter",
    "set_gauge",
    "set_histogram",
    "to_frame",
    "window_notes",
]

QUANTILE_METHOD = "bucket-interpolated"
QUANTILES = (0.5, 0.95)


def counter_column(key: str) -> str:
    """`requests_finished_total` → `requests_finished` (its increase over the window)."""
    return key.removesuffix("_total")


def histogram_prefix(key: str) -> str:
    """`ttft_s` → `ttft` (columns `ttft_count`, `ttft_mean_ms`, `ttft_p50_ms`, `ttft_p95_ms`)."""
    return key.removesuffix("_s")


def _histogram_columns(key: str) -> list[str]:
    p = histogram_prefix(key)
    return [f"{p}_count", f"{p}_mean_ms", *(f"{p}_p{round(q * 100)}_ms" for q in QUANTILES)]


COUNT_COLUMNS = [counter_column(k) for k in COUNTER_MEASURES]

STAGE_COLUMNS = [
    "target",
    "stage",
    "stack",
    "source",
    "measure_start_s",
    "measure_end_s",
    "window_start_s",
    "window_end_s",
    "window_s",
    "scrapes",
    "scrape_errors",
    *(c for k in COUNTER_MEASURES for c in (counter_column(k), f"{counter_column(k)}_per_s")),
    "prefix_cache_hit_rate",
    *(c for k in HISTOGRAM_MEASURES for c in _histogram_columns(k)),
    *(c for k in GAUGE_MEASURES for c in (f"{k}_mean", f"{k}_max")),
    "quantile_method",
    "restarted",
    "restart_reason",
    "note",
]
"""`window_*`: the scrape-aligned window the figures cover (see `semantics.aligned_window`);
counts are increases over it, `_per_s` divide by `window_s`; histogram `_mean_ms` is
increase(_sum)/increase(_count), `_pNN_ms` are bucket-interpolated; gauges are the mean and
max over the scrapes after the window's first one. `tpot_*` is a per-request TPOT (vLLM, our
ExLlamaV2 server) comparable with the client's; `inference_per_token_*` is TGI's inference time
(prefill included) per generated token, which is not. `prefix_cache_hit_rate`: the prompt
tokens the server found in its prefix cache over those it looked up (vLLM's
`prefix_cache_hits` / `prefix_cache_queries` increases), NaN where not exported."""


def new_row(
    target: str, stage: int, stack: str, source: str, measure: tuple[float, float]
) -> dict[str, Any]:
    """A row with every figure NaN (not exported, or no data), ready to be filled."""
    row: dict[str, Any] = dict.fromkeys(STAGE_COLUMNS, math.nan)
    row.update(
        target=target,
        stage=stage,
        stack=stack,
        source=source,
        measure_start_s=measure[0],
        measure_end_s=measure[1],
        scrapes=0,
        scrape_errors=0,
        quantile_method=QUANTILE_METHOD,
        restarted=False,
        restart_reason="",
        note="",
    )
    return row


def set_counter(row: dict[str, Any], key: str, increase: float) -> None:
    column = counter_column(key)
    row[column] = increase
    row[f"{column}_per_s"] = increase / row["window_s"] if row["window_s"] > 0 else math.nan


def set_histogram(
    row: dict[str, Any], key: str, count: float, total: float, quantiles: Sequence[float]
) -> None:
    """`total` in seconds (increase of `_sum`); `quantiles` in seconds, for `QUANTILES`."""
    count_col, mean_col, *quantile_cols = _histogram_columns(key)
    row[count_col] = count
    row[mean_col] = 1000.0 * total / count if count > 0 else math.nan
    for column, value in zip(quantile_cols, quantiles, strict=True):
        row[column] = 1000.0 * value


def set_gauge(row: dict[str, Any], key: str, mean: float, maximum: float) -> None:
    row[f"{key}_mean"] = mean
    row[f"{key}_max"] = maximum


def window_notes(
    window: tuple[float, float], measure: tuple[float, float], interval_s: float
) -> list[str]:
    """Caveats of a stage's figures: a window opened late, or one too short for rates."""
    notes = []
    if window[0] > measure[0]:
        notes.append("no successful scrape before the window start: counted from the first after")
    if not math.isnan(interval_s) and measure[1] - measure[0] < 2 * interval_s:
        notes.append(f"window shorter than twice the scrape interval ({interval_s:g} s)")
    return notes


def to_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    for row in rows:
        queries, hits = row["prefix_cache_queries"], row["prefix_cache_hits"]
        if queries > 0 and not math.isnan(hits):
            row["prefix_cache_hit_rate"] = hits / queries
    return pd.DataFrame(rows, columns=STAGE_COLUMNS)
