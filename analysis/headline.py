"""The report's opening verdict, computed from the summary rows (pure; no rendering)."""

from __future__ import annotations

import pandas as pd

from analysis.config import SloConfig

__all__ = ["best_within_slo", "headline"]


def _stage_meets(row: pd.Series, slo: SloConfig) -> bool:
    checks = (
        ("ttft_p95_ms", slo.ttft_ms),
        ("tpot_p95_ms", slo.tpot_ms),
        ("e2e_p95_ms", slo.e2e_ms),
    )
    for column, limit in checks:
        if limit is None:
            continue
        value = row[column]
        if value is None or pd.isna(value) or float(value) > limit:
            return False
    return bool(row["valid"])


def best_within_slo(summary: pd.DataFrame, slo: SloConfig) -> pd.DataFrame:
    """Per target, the valid stage with the most output tokens/s whose p95s meet the SLO."""
    meeting = summary[summary.apply(_stage_meets, axis=1, slo=slo)] if len(summary) else summary
    if meeting.empty:
        return meeting
    best = meeting.loc[meeting.groupby("target", sort=False)["output_tok_per_s"].idxmax()]
    return best.sort_values("output_tok_per_s", ascending=False)


def _slo_text(slo: SloConfig) -> str:
    parts = [
        f"{name} p95 ≤ {limit:g} ms"
        for name, limit in (("TTFT", slo.ttft_ms), ("TPOT", slo.tpot_ms), ("E2E", slo.e2e_ms))
        if limit is not None
    ]
    return ", ".join(parts) or "no SLO"


def headline(summary: pd.DataFrame, slo: SloConfig) -> list[str]:
    """Short sentences a reader acts on: who sustains the most load within the SLO, by how much."""
    if summary.empty:
        return ["No stage completed, so there is nothing to compare."]
    best = best_within_slo(summary, slo)
    lines = []
    if best.empty:
        lines.append(f"No target met the SLO ({_slo_text(slo)}) at any valid stage.")
    else:
        top = best.iloc[0]
        text = (
            f"**{top['target']}** ({top['stack']} {top['quant']}) sustains the most load within "
            f"the SLO ({_slo_text(slo)}): {top['output_tok_per_s']:.0f} output tok/s at "
            f"concurrency {top['load']:g}"
        )
        if len(best) > 1:
            second = best.iloc[1]
            ratio = top["output_tok_per_s"] / max(second["output_tok_per_s"], 1e-9)
            text += (
                f", {ratio:.2f}× the next best, {second['target']} "
                f"({second['output_tok_per_s']:.0f} tok/s)"
            )
        lines.append(text + ".")
        missing = sorted(set(summary["target"]) - set(best["target"]))
        if missing:
            lines.append(f"Never within the SLO at a valid stage: {', '.join(missing)}.")
    invalid = int((~summary["valid"].astype(bool)).sum())
    if invalid:
        lines.append(f"{invalid} of {len(summary)} stages are invalid; see the validity table.")
    if bool(summary["simulated"].any()):
        lines.append("Figures from simulated targets are *simulated*: no GPU was measured.")
    return lines
