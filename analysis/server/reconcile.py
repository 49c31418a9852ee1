"""Server figures against the client's, per stage (MEASUREMENT.md "Percentiles"): finished
requests vs `ok` within 1%, mean TTFT within 10%, bucket-interpolated quantiles side by side.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from analysis.stats import quantile
from loadtest.records import StageRecord

__all__ = [
    "CLIENT_COLUMNS",
    "COUNT_TOLERANCE",
    "RECONCILE_COLUMNS",
    "TTFT_TOLERANCE",
    "client_figures",
    "reconcile",
]

CLIENT_COLUMNS = ["target", "stage", "ok", "ttft_mean_ms"]
"""Required client columns. `ok`: requests that ended ok *inside the stage's measure window*
(what the server counts; summary.csv's `ok` counts requests *scheduled* in it, which differs
by the requests in flight at the edges). Optional: `ttft_p50_ms`, `ttft_p95_ms`."""

COUNT_TOLERANCE = 0.01
TTFT_TOLERANCE = 0.10

RECONCILE_COLUMNS = [
    "target",
    "stage",
    "source",
    "client_ok",
    "server_requests_finished",
    "requests_diff_pct",
    "requests_mismatch",
    "client_ttft_mean_ms",
    "server_ttft_mean_ms",
    "ttft_mean_diff_pct",
    "ttft_mismatch",
    "client_ttft_p50_ms",
    "server_ttft_p50_ms",
    "client_ttft_p95_ms",
    "server_ttft_p95_ms",
    "server_quantile_method",
    "server_preemptions",
    "server_prefix_cache_hit_rate",
    "restarted",
    "flagged",
    "reason",
]


def _num(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out


def _diff_pct(server: float, client: float) -> float:
    if math.isnan(server) or math.isnan(client):
        return math.nan
    if client == 0:
        return 0.0 if server == 0 else math.inf
    return 100.0 * (server - client) / client


def _row(r: pd.Series, count_tol: float, ttft_tol: float) -> dict[str, Any]:
    client_ok, finished = _num(r.get("ok")), _num(r.get("requests_finished"))
    client_ttft, server_ttft = _num(r.get("ttft_mean_ms_client")), _num(r.get("ttft_mean_ms"))
    count_pct, ttft_pct = _diff_pct(finished, client_ok), _diff_pct(server_ttft, client_ttft)
    count_bad = not math.isnan(count_pct) and abs(count_pct) > 100 * count_tol
    ttft_bad = not math.isnan(ttft_pct) and abs(ttft_pct) > 100 * ttft_tol
    restarted = r.get("restarted") in (True,)  # NaN where the server has no row
    reasons = []
    server_row = not pd.isna(r.get("source"))
    if not server_row:
        reasons.append("no server figures for this stage")
    elif math.isnan(client_ok):
        reasons.append("no client figures for this stage")
    if restarted:
        reasons.append(f"server restarted in the window ({r.get('restart_reason')})")
    if count_bad:
        reasons.append(
            f"server counted {finished:g} finished requests, client {client_ok:g} ok "
            f"({count_pct:+.1f}%, more than {count_tol:.0%} apart)"
        )
    elif server_row and math.isnan(finished) and not math.isnan(client_ok):
        reasons.append("server exports no finished-request counter")
    if ttft_bad:
        reasons.append(
            f"server mean TTFT {server_ttft:.1f} ms, client {client_ttft:.1f} ms "
            f"({ttft_pct:+.1f}%, more than {ttft_tol:.0%} apart)"
        )
    elif server_row and math.isnan(server_ttft) and not math.isnan(client_ttft):
        reasons.append("server exports no TTFT histogram (or saw no first token)")
    return {
        "target": r["target"],
        "stage": r["stage"],
        "source": r.get("source"),
        "client_ok": client_ok,
        "server_requests_finished": finished,
        "requests_diff_pct": count_pct,
        "requests_mismatch": count_bad,
        "client_ttft_mean_ms": client_ttft,
        "server_ttft_mean_ms": server_ttft,
        "ttft_mean_diff_pct": ttft_pct,
        "ttft_mismatch": ttft_bad,
        "client_ttft_p50_ms": _num(r.get("ttft_p50_ms_client")),
        "server_ttft_p50_ms": _num(r.get("ttft_p50_ms")),
        "client_ttft_p95_ms": _num(r.get("ttft_p95_ms_client")),
        "server_ttft_p95_ms": _num(r.get("ttft_p95_ms")),
        "server_quantile_method": "bucket-interpolated",
        "server_preemptions": _num(r.get("preemptions")),
        "server_prefix_cache_hit_rate": _num(r.get("prefix_cache_hit_rate")),
        "restarted": restarted,
        "flagged": count_bad or ttft_bad or restarted,
        "reason": "; ".join(reasons),
    }


def client_figures(
    requests: pd.DataFrame,
    stages: Sequence[StageRecord],
    windows: Mapping[tuple[str, int], tuple[float, float]] | None = None,
) -> pd.DataFrame:
    """`CLIENT_COLUMNS` plus `ttft_p50_ms`, `ttft_p95_ms` from request records: the requests
    that ended ok inside each stage's window, as the server counts them.

    `windows` (wall-clock seconds per target and stage) are the server figures' own
    scrape-aligned windows, so both sides count over the same interval; without one, the
    stage's measure window on the monotonic clock is used.
    """
    rows = []
    ok = requests[requests["outcome"] == "ok"]
    end_ns = ok["end_ns"].astype(float)
    if windows:
        end_wall = ok["wall_sent_s"].astype(float) + (end_ns - ok["sent_ns"].astype(float)) / 1e9
    for stage in stages:
        window = (windows or {}).get((stage.target, stage.stage))
        if window is not None:
            inside = (end_wall > window[0]) & (end_wall <= window[1])
        else:
            start_ns = stage.start_ns + int(stage.warmup_s * 1e9)
            inside = (end_ns >= start_ns) & (end_ns <= stage.end_ns)
        mine = ok[(ok["target"] == stage.target) & inside]
        ttft = mine["ttft_ms"].astype(float).dropna()
        p50, p95 = (quantile(ttft, q).value for q in (0.5, 0.95))
        rows.append(
            {
                "target": stage.target,
                "stage": stage.stage,
                "ok": len(mine),
                "ttft_mean_ms": float(ttft.mean()) if len(ttft) else math.nan,
                "ttft_p50_ms": math.nan if p50 is None else p50,
                "ttft_p95_ms": math.nan if p95 is None else p95,
            }
        )
    return pd.DataFrame(rows, columns=[*CLIENT_COLUMNS, "ttft_p50_ms", "ttft_p95_ms"])


def reconcile(
    server: pd.DataFrame,
    client: pd.DataFrame,
    *,
    count_tolerance: float = COUNT_TOLERANCE,
    ttft_tolerance: float = TTFT_TOLERANCE,
) -> pd.DataFrame:
    """One row per target × stage found in either frame (`RECONCILE_COLUMNS`).

    `server`: rows of `figures.STAGE_COLUMNS` (either path); `client`: `CLIENT_COLUMNS`.
    """
    missing = [c for c in CLIENT_COLUMNS if c not in client.columns]
    if missing:
        raise ValueError(f"client frame lacks columns {missing}; expected {CLIENT_COLUMNS}")
    keep = [c for c in (*CLIENT_COLUMNS, "ttft_p50_ms", "ttft_p95_ms") if c in client.columns]
    merged = server.merge(
        client[keep], on=["target", "stage"], how="outer", suffixes=("", "_client")
    )
    rows = [_row(r, count_tolerance, ttft_tolerance) for _, r in merged.iterrows()]
    return pd.DataFrame(rows, columns=RECONCILE_COLUMNS)
