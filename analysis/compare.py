"""Targets side by side (pure): every target at every load, ratios against a reference target,
each target's SLO limit, every pair with its uncertainty (`pairwise`), and the warnings a fair
comparison needs (e.g. unequal output lengths). Repeats are folded to one row per target and
load first (`repeats.by_load`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.capacity import Capacity, capacities, stage_meets
from analysis.config import SloConfig
from analysis.pairwise import PAIR_COLUMNS, PairVerdict, pair_verdict
from analysis.repeats import by_load
from analysis.search_view import Search, with_searches

__all__ = [
    "COMPARISON_COLUMNS",
    "OUTPUT_LENGTH_TOLERANCE",
    "Comparison",
    "compare_targets",
    "comparison_table",
    "output_length_warning",
    "pick_reference",
    "ranking",
    "ratio_column",
]

OUTPUT_LENGTH_TOLERANCE = 0.05

COMPARISON_COLUMNS = [
    "load",
    "mode",
    "target",
    "stack",
    "quant",
    "simulated",
    "valid",
    "invalid_reason",
    "repeats",
    "valid_repeats",
    "repeat_spread_pct",
    "req_per_s",
    "input_tok_per_s",
    "output_tok_per_s",
    "total_tok_per_s",
    "output_tok_per_s_ratio",
    "ttft_p95_ms",
    "ttft_p95_ratio",
    "tpot_p95_ms",
    "tpot_p95_ratio",
    "e2e_p95_ms",
    "error_rate",
    "error_breakdown",
    "goodput_req_per_s",
    "gpu_mean_power_w",
    "gpu_j_per_output_token",
    "gpu_j_per_output_token_ratio",
    "gpu_throttled",
]

_RATIOS = {
    "output_tok_per_s": "output_tok_per_s_ratio",
    "ttft_p95_ms": "ttft_p95_ratio",
    "tpot_p95_ms": "tpot_p95_ratio",
    "gpu_j_per_output_token": "gpu_j_per_output_token_ratio",  # energy (analysis/gpu_stages.py)
}


def ratio_column(column: str) -> str:
    """`ttft_p99_ms` → `ttft_p99_ratio`: its ratio to the reference at the same load."""
    return column.removesuffix("_ms") + "_ratio"


@dataclass(frozen=True)
class Comparison:
    """Everything the report compares. Ratios are target ÷ reference at the same load;
    `pairs` are every pair's ratios with intervals (`pairwise.PAIR_COLUMNS`), when the
    per-request records were at hand."""

    reference: str | None
    reference_why: str
    table: pd.DataFrame
    capacity: dict[str, Capacity]
    ranking: list[str]
    warnings: list[str] = field(default_factory=list)
    pairs: pd.DataFrame | None = None
    slo: SloConfig | None = None

    def verdict(self, a: str, b: str) -> PairVerdict | None:
        """Who is faster between `a` and `b`, or None when no pairs were computed: judged at
        the highest load where either still meets the SLO (where the verdict is decided),
        else at their highest common load."""
        if self.pairs is None:
            return None
        loads = set()
        if self.slo is not None:
            mine = self.table[self.table["target"].isin([a, b])]
            loads = {float(r["load"]) for _, r in mine.iterrows() if stage_meets(r, self.slo)}
        return pair_verdict(self.pairs, a, b, loads)

    def capacity_ratio(self, target: str) -> float | None:
        """Target's SLO-limited req/s over the reference's (None when either has none)."""
        if self.reference is None:
            return None
        mine, ref = self.capacity.get(target), self.capacity.get(self.reference)
        if mine is None or ref is None or not (mine.sustains and ref.sustains):
            return None
        if not mine.req_per_s or not ref.req_per_s:
            return None
        return mine.req_per_s / ref.req_per_s

    def throughput_ratio(self, target: str) -> float | None:
        """Median over the shared loads of target's output tok/s over the reference's."""
        rows = self.table[self.table["target"] == target]["output_tok_per_s_ratio"].dropna()
        return float(rows.median()) if len(rows) else None


def pick_reference(summary: pd.DataFrame, configured: str | None) -> tuple[str | None, str]:
    """The reference target and why: `analysis.reference` when set, else the FP16 target.

    An explicit choice wins over the FP16 convention; with neither, there is no reference.
    """
    if summary.empty:
        return None, ""
    quants = summary.drop_duplicates("target").set_index("target")["quant"]
    if configured and configured in quants.index:
        return configured, "analysis.reference"
    fp16 = [str(target) for target, quant in quants.items() if str(quant).lower() == "fp16"]
    if fp16:
        return fp16[0], "FP16 target"
    return None, ""


def _ratio(values: pd.Series, reference: pd.Series) -> pd.Series:
    with np.errstate(divide="ignore", invalid="ignore"):
        out = values.astype(float) / reference.astype(float)
    return out.where(np.isfinite(out))


def comparison_table(
    summary: pd.DataFrame, reference: str | None, slo: SloConfig | None = None
) -> pd.DataFrame:
    """One row per load × target (loads ascending, targets in run order) with ratios to the
    reference: output tok/s, p95 TTFT and TPOT, and each SLO objective's figure."""
    extra = [o.column for o in slo.objectives()] if slo is not None else []
    extra = [c for c in dict.fromkeys(extra) if c not in COMPARISON_COLUMNS]
    ratios = {**_RATIOS, **{c: ratio_column(c) for c in extra}}
    columns = COMPARISON_COLUMNS + [name for c in extra for name in (c, ratio_column(c))]
    if summary.empty:
        return pd.DataFrame(columns=columns)
    table = by_load(summary) if "repeats" not in summary else summary.copy()
    table["_order"] = pd.factorize(table["target"])[0]
    if reference is not None:
        ref = table[table["target"] == reference].drop_duplicates("load", keep="last")
        ref = ref.set_index("load")
        for column, ratio in ratios.items():
            if column in table:  # GPU figures only in summaries that have them
                table[ratio] = _ratio(table[column], table["load"].map(ref[column]))
    else:
        for ratio in ratios.values():
            table[ratio] = np.nan
    table = table.sort_values(["load", "_order"], kind="stable")
    for column in columns:
        if column not in table:
            table[column] = None
    return table[columns].reset_index(drop=True)


def _mean_output_tokens(summary: pd.DataFrame) -> dict[str, float]:
    """Each target's mean output length over its ok requests (weighted by stage)."""
    out = {}
    for target, rows in summary.groupby("target", sort=False):
        weights = rows["ok"].astype(float)
        means = pd.to_numeric(rows["output_tokens_mean"], errors="coerce")
        usable = means.notna() & (weights > 0)
        if usable.any():
            out[str(target)] = float(np.average(means[usable], weights=weights[usable]))
    return out


def output_length_warning(
    summary: pd.DataFrame, tolerance: float = OUTPUT_LENGTH_TOLERANCE
) -> str | None:
    """A warning when targets' mean output lengths differ by more than `tolerance`.

    TGI cannot pin the output length (no `ignore_eos`), so throughput in tokens and in
    requests then tell different stories; per-token figures are the fairer comparison.
    """
    if "output_tokens_mean" not in summary:
        return None
    means = _mean_output_tokens(summary)
    if len(means) < 2:
        return None
    low, high = min(means.values()), max(means.values())
    if low <= 0 or (high - low) / low <= tolerance:
        return None
    shown = ", ".join(f"{t} {m:.1f}" for t, m in means.items())
    return (
        f"Mean output lengths differ by {(high - low) / low:.0%} (> {tolerance:.0%}): {shown} "
        "tokens. Compare output tok/s and TPOT rather than req/s (TGI cannot pin output length)."
    )


def ranking(capacity: dict[str, Capacity]) -> list[str]:
    """Targets by SLO-limited req/s, highest first; then those that never met the SLO; then
    those not measured (no valid stage)."""

    def key(item: tuple[str, Capacity]) -> tuple[int, float]:
        cap = item[1]
        rate = cap.req_per_s if cap.req_per_s is not None and math.isfinite(cap.req_per_s) else 0
        return (0 if cap.sustains else 1 if cap.measured else 2, -rate)

    return [name for name, _ in sorted(capacity.items(), key=key)]


def compare_targets(
    summary: pd.DataFrame,
    slo: SloConfig,
    reference: str | None = None,
    pairs: pd.DataFrame | None = None,
    searches: Mapping[str, Search] | None = None,
) -> Comparison:
    """The whole comparison; `reference` is the config's `analysis.reference`, if any;
    `pairs` from `pairwise.compare_pairs` (None when only summary rows are at hand);
    `searches`: a search run's answers, each target's capacity (analysis/search_view.py)."""
    chosen, why = pick_reference(summary, reference)
    warnings = []
    if reference and chosen != reference:
        warnings.append(
            f"analysis.reference names {reference!r}, which is not a target of this run; "
            + (f"using the FP16 target {chosen} instead." if chosen else "no ratios shown.")
        )
    length = output_length_warning(summary)
    if length:
        warnings.append(length)
    per_load = by_load(summary)
    caps = with_searches(capacities(per_load, slo), per_load, searches)
    table = comparison_table(per_load, chosen, slo)
    if pairs is not None and pairs.empty:
        pairs = pd.DataFrame(columns=PAIR_COLUMNS)
    return Comparison(chosen, why, table, caps, ranking(caps), warnings, pairs, slo)
