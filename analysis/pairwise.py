"""Every pair of targets at equal load, with uncertainty (pure; the resampling is SciPy's).

For each load and each pair (A, B) measured validly there, the ratio A ÷ B of the median and
of each SLO objective's percentile (e.g. TTFT p50 and p95, TPOT p50 and p95) from the
per-request records, with a 95% bootstrap interval (each target's bootstrap distribution is
drawn once by SciPy and shared by its pairs). The median is the steady figure, the SLO's
percentile the one the verdict is about; tails are noisier, so both are shown. Lower latency
is better: a ratio below 1 means A is faster. A difference is called only when the whole
interval lies outside the tie band — ±`analysis.tie_margin`, or the spread between a
target's own repeats at that load when that is wider — else it is "within noise". Repeats
of a stage pool their records; invalid stages never count.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from itertools import combinations
from typing import Literal

import numpy as np
import pandas as pd

from analysis.config import AnalysisConfig, Objective, SloConfig
from analysis.repeats import relative_spread
from analysis.stats import Bootstrap, bootstrap_quantile, ratio_of
from analysis.summary import StageRequests

__all__ = [
    "PAIR_COLUMNS",
    "PairVerdict",
    "compare_pairs",
    "decision_objectives",
    "pair_verdict",
    "swap_pairs",
]

PAIR_COLUMNS = [
    "load",
    "a",
    "b",
    "metric",
    "column",
    "ratio",
    "low",
    "high",
    "n_a",
    "n_b",
    "band",
    "verdict",
]

Verdict = Literal["a faster", "b faster", "within noise"]


def decision_objectives(slo: SloConfig) -> list[Objective]:
    """The figures pairs are compared on: for each metric the SLO names (TTFT and TPOT when
    it names none), its median and then the SLO's percentile."""
    objectives = slo.objectives() or [Objective("ttft", 95.0, 0.0), Objective("tpot", 95.0, 0.0)]
    out = []
    for objective in objectives:
        out.append(Objective(objective.metric, 50.0, 0.0))
        if objective.percentile != 50.0:
            out.append(objective)
    return out


def _verdict(low: float, high: float, band: float) -> Verdict:
    if high < 1 / (1 + band):
        return "a faster"
    if low > 1 + band:
        return "b faster"
    return "within noise"


def _seed(*parts: object) -> int:
    return zlib.crc32("|".join(str(p) for p in parts).encode())


def _valid_stages(summary: pd.DataFrame) -> dict[tuple[str, float], list[int]]:
    valid = summary[summary["valid"].astype(bool)]
    out: dict[tuple[str, float], list[int]] = {}
    for r in valid.itertuples():
        out.setdefault((str(r.target), float(r.load)), []).append(int(r.stage))
    return out


def _spread(summary: pd.DataFrame, target: str, load: float, column: str) -> float:
    rows = summary[
        (summary["target"] == target) & (summary["load"] == load) & summary["valid"].astype(bool)
    ]
    if column not in rows:
        return 0.0
    spread = relative_spread(pd.to_numeric(rows[column], errors="coerce").to_numpy(float))
    return spread or 0.0


def compare_pairs(
    rec: StageRequests,
    summary: pd.DataFrame,
    slo: SloConfig,
    limits: AnalysisConfig | None = None,
) -> pd.DataFrame:
    """`PAIR_COLUMNS` rows, loads ascending, pairs in run order (A before B), one per
    objective; a pair without enough samples for a percentile has no row for it."""
    limits = limits or AnalysisConfig()
    stages = _valid_stages(summary)
    order = list(dict.fromkeys(str(t) for t in summary["target"])) if len(summary) else []
    rows = []
    for load in sorted({load for _, load in stages}):
        here = [t for t in order if (t, load) in stages]
        pooled = {t: np.concatenate([rec.of(t, s) for s in stages[(t, load)]]) for t in here}
        for objective in decision_objectives(slo):
            q = objective.percentile / 100
            sides: dict[str, Bootstrap | None] = {
                t: bootstrap_quantile(
                    rec.metric(objective.metric, pooled[t]), q, seed=_seed(t, load, objective.label)
                )
                for t in here
            }
            for a, b in combinations(here, 2):
                left, right = sides[a], sides[b]
                if left is None or right is None:
                    continue
                found = ratio_of(left, right)
                band = max(
                    limits.tie_margin,
                    _spread(summary, a, load, objective.column),
                    _spread(summary, b, load, objective.column),
                )
                rows.append(
                    {
                        "load": load,
                        "a": a,
                        "b": b,
                        "metric": objective.label,
                        "column": objective.column,
                        "ratio": found.ratio,
                        "low": found.low,
                        "high": found.high,
                        "n_a": found.n_a,
                        "n_b": found.n_b,
                        "band": band,
                        "verdict": _verdict(found.low, found.high, band),
                    }
                )
    return pd.DataFrame(rows, columns=PAIR_COLUMNS)


@dataclass(frozen=True)
class PairVerdict:
    """Who is faster between two targets at the highest load where both were compared.

    `winner` is a target name, or None for a tie ("within noise") or a mixed result
    (`mixed`: one objective favours each). `evidence` holds the deciding pair rows.
    """

    a: str
    b: str
    load: float | None
    winner: str | None
    mixed: bool
    evidence: pd.DataFrame

    @property
    def compared(self) -> bool:
        return self.load is not None


def pair_verdict(
    pairs: pd.DataFrame, a: str, b: str, loads: set[float] | None = None
) -> PairVerdict:
    """The verdict between `a` and `b` from `compare_pairs` rows (either order), at the
    highest load of `loads` where they were compared (of all their loads when none is)."""
    empty = pd.DataFrame(columns=PAIR_COLUMNS)
    if pairs.empty:
        return PairVerdict(a, b, None, None, False, empty)
    forward = pairs[(pairs["a"] == a) & (pairs["b"] == b)]
    backward = pairs[(pairs["a"] == b) & (pairs["b"] == a)]
    if forward.empty and backward.empty:
        return PairVerdict(a, b, None, None, False, empty)
    rows = forward if not forward.empty else swap_pairs(backward)
    preferred = rows[rows["load"].isin(loads)] if loads else rows.iloc[0:0]
    load = float((preferred if len(preferred) else rows)["load"].max())
    at = rows[rows["load"] == load]
    faster_a = bool((at["verdict"] == "a faster").any())
    faster_b = bool((at["verdict"] == "b faster").any())
    winner = a if faster_a and not faster_b else b if faster_b and not faster_a else None
    return PairVerdict(a, b, load, winner, faster_a and faster_b, at.reset_index(drop=True))


def swap_pairs(rows: pd.DataFrame) -> pd.DataFrame:
    """The same comparisons seen from the other side: B ÷ A, interval inverted."""
    out = rows.copy()
    out["a"], out["b"] = rows["b"], rows["a"]
    out["n_a"], out["n_b"] = rows["n_b"], rows["n_a"]
    out["ratio"] = 1 / rows["ratio"]
    out["low"], out["high"] = 1 / rows["high"], 1 / rows["low"]
    flip = {"a faster": "b faster", "b faster": "a faster", "within noise": "within noise"}
    out["verdict"] = rows["verdict"].map(flip)
    return out
