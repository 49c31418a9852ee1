"""Repeated sweeps (pure): one row per target × load for the verdict, however many repeats ran.

A run may measure each target's stages several times (`StageRecord.repeat`, summary column
`repeat`; stage numbers stay unique per target). The comparison, the SLO limit and the charts
take one figure per target and load: the median over the valid repeats (invalid ones are
left out and counted), and `repeat_spread_pct` says how far the repeats lay apart.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["by_load", "has_repeats", "relative_spread"]

_SPREAD_OF = "ttft_p50_ms"  # the figure whose spread across repeats is shown per load


def has_repeats(summary: pd.DataFrame) -> bool:
    return bool(len(summary)) and bool(summary.duplicated(["target", "load"]).any())


def relative_spread(values: np.ndarray) -> float | None:
    """(max − min) / median of the finite values, None below two."""
    finite = values[np.isfinite(values)]
    if len(finite) < 2:
        return None
    middle = float(np.median(finite))
    return float((finite.max() - finite.min()) / middle) if middle > 0 else None


def _combine(rows: pd.DataFrame) -> dict[str, object]:
    first = rows.iloc[0].to_dict()
    valid = rows[rows["valid"].astype(bool)]
    out = dict(first)
    out["repeats"] = len(rows)
    out["valid_repeats"] = len(valid)
    if valid.empty:
        reasons = dict.fromkeys(str(r) for r in rows["invalid_reason"] if r)
        out["invalid_reason"] = "every repeat invalid: " + " | ".join(reasons)
        out["repeat_spread_pct"] = None
        return out
    for column in rows.columns:
        if column in ("stage", "repeat", "load") or not pd.api.types.is_numeric_dtype(rows[column]):
            continue
        if pd.api.types.is_bool_dtype(rows[column]):
            continue
        values = pd.to_numeric(valid[column], errors="coerce")
        out[column] = float(values.median()) if values.notna().any() else None
    out["valid"] = True
    dropped = len(rows) - len(valid)
    out["invalid_reason"] = f"{dropped} of {len(rows)} repeats invalid" if dropped else ""
    spread = relative_spread(pd.to_numeric(valid[_SPREAD_OF], errors="coerce").to_numpy(float))
    out["repeat_spread_pct"] = None if spread is None else 100 * spread
    return out


def by_load(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per target × load, in run order; without repeats, the summary itself (with
    `repeats` = 1). With repeats, numeric figures are medians over the valid repeats."""
    if not has_repeats(summary):
        out = summary.copy()
        out["repeats"] = 1
        out["valid_repeats"] = out["valid"].astype(bool).astype(int)
        out["repeat_spread_pct"] = None
        return out
    groups = summary.groupby(["target", "load"], sort=False)
    combined = [_combine(rows) for _, rows in groups]
    columns = [*summary.columns, "repeats", "valid_repeats", "repeat_spread_pct"]
    return pd.DataFrame(combined, columns=columns)
