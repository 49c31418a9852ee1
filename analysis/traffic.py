"""The run's own traffic (pure): TTFT by conversation turn, and the replayed trace's summary
as report blocks.

Multi-turn runs (`workload.sessions`, or a trace with sessions) record each request's turn
(0 = a conversation's first). Each later turn carries the whole conversation so far, so its
prompt grows; `turn_latency` puts TTFT next to the prompt length, turn by turn, over each
stage's measured requests (as every other figure: `warmup: false`), so the cost of a growing
context, and what a prefix cache saves of it, are visible. TTFT is over successful requests;
p95 needs 59 of them (MEASUREMENT.md) and is empty below that.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from analysis.capacity import load_unit
from analysis.document import Block, Bullets, Heading, Paragraph, Table
from analysis.stats import quantiles
from loadtest.traces.stats import Lengths, TraceSummary

__all__ = [
    "TURNS_FILE",
    "TURN_COLUMNS",
    "production_rate",
    "trace_blocks",
    "turn_blocks",
    "turn_latency",
]

TURNS_FILE = "turns.csv"
TURN_COLUMNS = [
    "target",
    "stage",
    "mode",
    "load",
    "turn",
    "requests",
    "ok",
    "prompt_tokens_mean",
    "ttft_mean_ms",
    "ttft_p50_ms",
    "ttft_p95_ms",
]


def turn_latency(requests: pd.DataFrame) -> pd.DataFrame:
    """One row per target × stage × turn index of the measured requests that have a turn
    (TURN_COLUMNS); empty when the run had no conversations."""
    needed = {"turn", "warmup", "outcome", "ttft_ms", "prompt_tokens"}
    if requests.empty or not needed <= set(requests.columns):
        return pd.DataFrame(columns=TURN_COLUMNS)
    measured = requests[~requests["warmup"].fillna(False).astype(bool)]
    measured = measured[measured["turn"].notna()]
    rows = []
    keys = ["target", "stage", "mode", "load", "turn"]
    for (target, stage, mode, load, turn), group in measured.groupby(keys, sort=True):
        ok = group[group["outcome"].astype(str) == "ok"]
        ttft = ok["ttft_ms"].to_numpy(dtype=float)
        p50, p95 = quantiles(ttft, [0.5, 0.95])
        rows.append(
            {
                "target": target,
                "stage": int(stage),
                "mode": mode,
                "load": float(load),
                "turn": int(turn),
                "requests": len(group),
                "ok": len(ok),
                "prompt_tokens_mean": float(group["prompt_tokens"].mean()),
                "ttft_mean_ms": float(np.nanmean(ttft)) if len(ttft) else np.nan,
                "ttft_p50_ms": np.nan if p50.value is None else p50.value,
                "ttft_p95_ms": np.nan if p95.value is None else p95.value,
            }
        )
    return pd.DataFrame(rows, columns=TURN_COLUMNS)


def production_rate(summary: TraceSummary, trace_config: dict[str, Any]) -> float:
    """The replayed trace's own mean request rate (req/s), as production sent it: trace.json's
    rate is after the config's `speedup` and `sample`, so both are undone (a window stays:
    it is the traffic chosen). A growth stage at m× replays production at m × speedup ×
    sample of this rate."""
    speedup = float(trace_config.get("speedup", 1.0) or 1.0)
    sample = float(trace_config.get("sample", 1.0) or 1.0)
    return summary.mean_rate_per_s / (speedup * sample)


def _ms(value: float) -> str:
    return "n/a" if pd.isna(value) else f"{value:,.1f}"


def turn_blocks(turns: pd.DataFrame, labels: dict[str, str]) -> list[Block]:
    """The report's 'TTFT by conversation turn' section (nothing without conversations)."""
    if turns.empty:
        return []
    headers = ["target", "stage", "turn", "requests", "ok", "prompt tokens (mean)"]
    headers += ["TTFT mean", "TTFT p50", "TTFT p95"]
    rows = [
        [
            labels.get(str(r.target), str(r.target)),
            f"{int(r.stage) + 1} ({load_unit(str(r.mode), float(r.load))})",
            str(int(r.turn) + 1),
            str(r.requests),
            str(r.ok),
            f"{float(r.prompt_tokens_mean):,.0f}",
            _ms(float(r.ttft_mean_ms)),
            _ms(float(r.ttft_p50_ms)),
            _ms(float(r.ttft_p95_ms)),
        ]
        for r in turns.itertuples()
    ]
    note = (
        "Each turn of a conversation carries the whole conversation so far, so its prompt "
        "grows turn by turn. Milliseconds, over each stage's measured requests; TTFT over the "
        "successful ones (p95 needs 59 of them, n/a below). Turn 1 is a conversation's first. "
        f"Also in {TURNS_FILE}."
    )
    return [Heading("TTFT by conversation turn"), Paragraph(note), Table(headers, rows)]


def _lengths(name: str, lengths: Lengths) -> list[str]:
    values = (lengths.mean, lengths.p50, lengths.p90, lengths.p99)
    return [name, *(f"{v:,.0f}" for v in values), f"{lengths.min:,}", f"{lengths.max:,}"]


def trace_blocks(summary: TraceSummary | None) -> list[Block]:
    """The replayed trace, as `quantbench trace describe` summarises it (after the config's
    window, sample and speedup): lengths, arrivals, sessions and prefix reuse."""
    if summary is None:
        return []
    facts = [
        f"file: {summary.source} ({summary.format})",
        f"{summary.requests:,} requests over {summary.span_s:,.1f} s (after window, sample and "
        f"speedup): mean {summary.mean_rate_per_s:.3g} req/s, peak {summary.peak_rate_per_s:.3g}"
        f" req/s in {summary.rate_bucket_s:g} s ({summary.peak_to_mean:.1f}× the mean)",
    ]
    cv, dispersion = summary.interarrival_cv, summary.dispersion_index
    if cv is not None and dispersion is not None:
        facts.append(
            f"burstiness: inter-arrival CV {cv:.2f}, count variance/mean {dispersion:.2f} "
            "(both 1 for Poisson arrivals, above 1 bursty)"
        )
    rho = summary.input_output_spearman
    if rho is not None:
        facts.append(f"input-output length rank correlation: {rho:+.2f}")
    if summary.sessions is not None:
        s = summary.sessions
        facts.append(
            f"sessions: {s.sessions:,} (turns mean {s.turns_mean:.1f}, max {s.turns_max}); "
            f"{s.multi_turn_request_share:.0%} of requests in multi-turn sessions"
        )
    if summary.prefix is not None:
        p = summary.prefix
        facts.append(
            f"prefix reuse: {p.reused_token_share:.1%} of prompt tokens lie in {p.block_size}-"
            "token blocks an earlier request sent (the hit rate of an unbounded prefix cache; "
            "compare the server's prefix-cache hits below)"
        )
    headers = ["tokens", "mean", "p50", "p90", "p99", "min", "max"]
    table = Table(
        headers,
        [_lengths("input", summary.input_tokens), _lengths("output", summary.output_tokens)],
    )
    return [Heading("The replayed trace"), Bullets(facts), table]
