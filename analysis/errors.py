"""What went wrong in each stage (pure): failed requests by outcome and HTTP status, with a
count and one example message each, so "errors 3%" reads as "503 × 12: overloaded".

Outcomes are taken as written (any value, so a new outcome needs no change here); only the
stage's own requests count (MEASUREMENT.md: scheduled after the warm-up).
"""

from __future__ import annotations

import math

import pandas as pd

from loadtest.server_text import server_message

__all__ = [
    "BREAKDOWN_COLUMNS",
    "CONNECTION_OUTCOMES",
    "dominant_failure",
    "error_breakdown",
    "failure_text",
    "one_line",
]

BREAKDOWN_COLUMNS = ["target", "stage", "outcome", "http_status", "count", "example"]

CONNECTION_OUTCOMES = frozenset({"connect_error", "timeout_connect"})
"""Outcomes that mean the target could not be reached (not that it answered badly)."""

_EXAMPLE_CHARS = 120


def one_line(text: object, limit: int = _EXAMPLE_CHARS) -> str:
    """A message on one line, at most `limit` characters (ellipsis when cut)."""
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return ""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def error_breakdown(requests: pd.DataFrame) -> pd.DataFrame:
    """One row per target × stage × outcome × HTTP status of the non-`ok`, non-warm-up
    requests (`BREAKDOWN_COLUMNS`), most frequent first within a stage; `example` is the
    first message of the group on one line (a JSON error's message, an HTML page's title:
    `loadtest.server_text`). The API key is already redacted at the source."""
    if requests.empty:
        return pd.DataFrame(columns=BREAKDOWN_COLUMNS)
    warmup = requests["warmup"].fillna(False).astype(bool)
    mask = (requests["outcome"].astype(str) != "ok") & ~warmup
    if not mask.any():
        return pd.DataFrame(columns=BREAKDOWN_COLUMNS)
    columns = ["target", "stage", "outcome", "http_status", "error"]  # never copy ITL lists
    failed = requests.loc[mask, columns]
    frame = pd.DataFrame(
        {
            "target": failed["target"].astype(str).to_numpy(),
            "stage": failed["stage"].astype(int).to_numpy(),
            "outcome": failed["outcome"].astype(str).to_numpy(),
            "http_status": pd.to_numeric(failed["http_status"], errors="coerce")
            .fillna(-1)
            .astype(int)
            .to_numpy(),
            "error": failed["error"].astype(object).to_numpy(),
        }
    )
    keys = ["target", "stage", "outcome", "http_status"]
    grouped = frame.groupby(keys, sort=False)
    out = grouped.size().rename("count").reset_index()
    examples = grouped["error"].agg(_first_message)
    out["example"] = [
        one_line(server_message(v)) if isinstance(v, str) else "" for v in examples.to_numpy()
    ]
    out["http_status"] = out["http_status"].astype("Int64").where(out["http_status"] >= 0)
    out["_run_order"] = pd.factorize(out["target"])[0]
    out = out.sort_values(
        ["_run_order", "stage", "count"], ascending=[True, True, False], kind="stable"
    )
    return out.reset_index(drop=True)[BREAKDOWN_COLUMNS]


def _first_message(values: pd.Series) -> str | None:
    return next((v for v in values if isinstance(v, str) and v.strip()), None)


def dominant_failure(rows: pd.DataFrame, requests: int) -> str | None:
    """`400 http_error (57 of 60 requests): maximum context length is 1024 tokens` for the
    most common failure of breakdown `rows` (e.g. one target's, across its stages) among
    `requests` scheduled, or None when most of them were ok."""
    if rows.empty or not requests:
        return None
    status = rows["http_status"].astype("Int64").fillna(-1)
    keys = [rows["outcome"].astype(str), status]
    counts = rows["count"].groupby(keys, sort=False).sum()
    if int(counts.sum()) * 2 <= requests:
        return None
    (outcome, code), count = counts.idxmax(), int(counts.max())
    label = f"{code} {outcome}" if code >= 0 else str(outcome)
    text = f"{label} ({count:,} of {requests:,} requests)"
    same = rows[(rows["outcome"].astype(str) == outcome) & (status == code)]
    message = _first_message(same["example"])
    return f"{text}: {message}" if message else text


def failure_text(rows: pd.DataFrame, limit: int = 3) -> str:
    """`connect_error × 46,268; http_error 503 × 12` for one stage's breakdown rows."""
    parts = []
    for r in rows.head(limit).itertuples():
        status = "" if pd.isna(r.http_status) else f" {int(r.http_status)}"
        parts.append(f"{r.outcome}{status} × {int(r.count):,}")
    if len(rows) > limit:
        parts.append(f"{len(rows) - limit} more kinds")
    return "; ".join(parts)
