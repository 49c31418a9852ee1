"""Latency distributions per target at each load (pure): the quantile curves a CDF chart
draws, from the stages' own requests (repeats pooled, ok requests only).

A curve is a few hundred quantiles, not every request, so a million-record run draws as
fast as a small one; its tail keeps the p99 and p99.9 points exactly.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.summary import StageRequests

__all__ = ["CDF_COLUMNS", "latency_cdfs"]

CDF_COLUMNS = ["load", "target", "metric", "valid", "n", "quantile", "value_ms"]
_GRID = np.unique(np.concatenate([np.linspace(0, 1, 201), [0.99, 0.995, 0.999]]))


def latency_cdfs(
    rec: StageRequests, summary: pd.DataFrame, metrics: tuple[str, ...] = ("ttft", "tpot")
) -> pd.DataFrame:
    """`CDF_COLUMNS` rows: for each load, target and metric, the value at each quantile of
    the grid. `valid` is False when none of the target's stages at that load is valid
    (drawn, but marked); with some valid, only the valid ones are pooled."""
    rows: list[pd.DataFrame] = []
    if summary.empty:
        return pd.DataFrame(columns=CDF_COLUMNS)
    for (target, load), stages in summary.groupby(["target", "load"], sort=False):
        valid = stages[stages["valid"].astype(bool)]
        used = valid if len(valid) else stages
        index = np.concatenate(
            [rec.of(str(target), int(s)) for s in used["stage"]] or [np.empty(0, np.int64)]
        )
        for metric in metrics:
            values = rec.metric(metric, index)
            values = values[np.isfinite(values)]
            if not len(values):
                continue
            rows.append(
                pd.DataFrame(
                    {
                        "load": float(load),
                        "target": str(target),
                        "metric": metric,
                        "valid": bool(len(valid)),
                        "n": len(values),
                        "quantile": _GRID,
                        "value_ms": np.quantile(values, _GRID),
                    }
                )
            )
    if not rows:
        return pd.DataFrame(columns=CDF_COLUMNS)
    return pd.concat(rows, ignore_index=True)[CDF_COLUMNS]
