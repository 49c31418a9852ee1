"""The report's opening summary, computed from the comparison and the plan (pure; no rendering).

Sentences a reader acts on: who sustains the most load within the SLO and by how much — a
winner only when the pairwise interval at equal load excludes a tie —, which stages were left
out as unknown and why, which targets could not be measured at all, how each target compares
with the reference, and which target the capacity plan finds cheapest.
"""

from __future__ import annotations

import pandas as pd

from analysis.capacity import Capacity, load_unit, slo_text
from analysis.compare import Comparison, compare_targets
from analysis.config import SloConfig
from analysis.pairwise import PairVerdict
from analysis.plan import Plan

__all__ = ["headline", "target_label", "target_labels"]


def target_label(name: str, stack: str, quant: str, simulated: bool, *, bold: bool = False) -> str:
    """`name (stack quant)`, with *(simulated)* for every simulated target."""
    shown = f"**{name}**" if bold else name
    kind = " ".join(part for part in (stack, quant) if part)
    text = f"{shown} ({kind})" if kind else shown
    return text + (" *(simulated)*" if simulated else "")


def target_labels(summary: pd.DataFrame, *, bold: bool = False) -> dict[str, str]:
    if summary.empty:
        return {}
    firsts = summary.drop_duplicates("target")
    return {
        str(r["target"]): target_label(
            str(r["target"]), str(r["stack"]), str(r["quant"]), bool(r["simulated"]), bold=bold
        )
        for _, r in firsts.iterrows()
    }


def _ratio(top: Capacity, other: Capacity) -> float | None:
    if not top.req_per_s or not other.req_per_s:
        return None
    return top.req_per_s / other.req_per_s


def _figures(cap: Capacity) -> str:
    rate = cap.text("req_per_s", "req/s", note=False)
    tokens = cap.text("output_tok_per_s", "output tok/s", note=False)
    if cap.lower_bound and cap.load is not None:
        highest = load_unit(cap.mode, cap.load)
        return f"{rate}, {tokens} (it met the SLO at every measured load, up to {highest})"
    where = f"{cap.text('load', note=False)} {load_unit(cap.mode)}"
    return f"{rate}, {tokens}, at {where}"


def _evidence(verdict: PairVerdict, limit: int = 3) -> str:
    """`TTFT p95 0.87× (95% CI 0.85–0.89), TPOT p95 1.01× (0.98–1.03)` for A ÷ B."""
    parts = []
    for r in verdict.evidence.head(limit).itertuples():
        parts.append(f"{r.metric} {r.ratio:.2f}× ({r.low:.2f}–{r.high:.2f})")
    return ", ".join(parts)


def _tie_or_lead(
    verdict: PairVerdict | None, labels: dict[str, str], top: Capacity, mode: str
) -> str | None:
    """The sentence that replaces "X wins" when the pair's intervals do not back it."""
    if verdict is None or not verdict.compared or verdict.winner == top.target:
        return None
    a, b = labels[verdict.a], labels[verdict.b]
    where = load_unit(mode, verdict.load)
    ratios = f"{verdict.a} ÷ {verdict.b}, 95% intervals: {_evidence(verdict)}"
    if verdict.mixed:
        return f"against {b} the result is mixed at {where} ({ratios})"
    if verdict.winner is None:
        return (
            f"{a} and {b} are within noise of each other at {where} ({ratios}), so no winner "
            "is called between them"
        )
    return f"yet at equal load ({where}) {labels[verdict.winner]} is faster ({ratios})"


def _winner(comparison: Comparison, labels: dict[str, str], slo: SloConfig) -> str:
    measured = [t for t in comparison.ranking if comparison.capacity[t].measured]
    if not measured:
        return (
            f"No target has a valid stage, so none was measured against the SLO "
            f"({slo_text(slo)}): see the stage validity table."
        )
    sustaining = [t for t in measured if comparison.capacity[t].sustains]
    if not sustaining:
        return f"No measured target met the SLO ({slo_text(slo)}) at any valid stage."
    top = comparison.capacity[sustaining[0]]
    text = (
        f"{labels[top.target]} sustains the most load within the SLO ({slo_text(slo)}): "
        f"{_figures(top)}"
    )
    if len(sustaining) == 1:
        return text + "; it is the only measured target within the SLO."
    second = comparison.capacity[sustaining[1]]
    if top.lower_bound and second.lower_bound:
        return _neither_limited(comparison, labels, slo, top, second)
    caveat = _tie_or_lead(comparison.verdict(top.target, second.target), labels, top, top.mode)
    ratio = _ratio(top, second)
    named = f"{labels[second.target]} ({second.text('req_per_s', 'req/s', note=False)})"
    if ratio is None:
        text += f"; next best {named}"
    elif top.lower_bound:
        text += f", at least {ratio:.2f}× the next best, {named}"
    else:
        text += f", {ratio:.2f}× the next best, {named}"
        if second.lower_bound:
            text += "; its limit lies above the measured loads, so the lead may be smaller"
    if caveat:
        return text + f"; but {caveat}."
    verdict = comparison.verdict(top.target, second.target)
    if verdict is not None and verdict.compared:
        where = load_unit(top.mode, verdict.load)
        text += f"; at {where} it is faster beyond noise ({_evidence(verdict)})"
    return text + "."


def _neither_limited(
    comparison: Comparison, labels: dict[str, str], slo: SloConfig, top: Capacity, second: Capacity
) -> str:
    """The two best met the SLO at every measured load: their limits are unknown, so their
    req/s there says little; the pair's intervals at equal load decide, or nothing does."""
    verdict = comparison.verdict(top.target, second.target)
    first, other = top.target, second.target
    if verdict is not None and verdict.winner == second.target:
        first, other = second.target, top.target
        verdict = comparison.verdict(first, other)  # the evidence as winner ÷ other
    both = (
        f"{labels[first]} and {labels[other]} both met the SLO ({slo_text(slo)}) at every "
        f"measured load, up to {load_unit(top.mode, top.load)} (add higher stages to find "
        "their limits)"
    )
    if verdict is None or not verdict.compared:
        return f"{both}; {top.target} completed more there: {_figures(top)}."
    where = load_unit(top.mode, verdict.load)
    ratios = f"{verdict.a} ÷ {verdict.b}, 95% intervals: {_evidence(verdict)}"
    if verdict.winner is None:
        kind = "mixed" if verdict.mixed else "within noise of each other"
        return f"{both}; at {where} they are {kind} ({ratios}), so no winner is called."
    return (
        f"{labels[first]} is faster than {labels[other]} at equal load beyond noise "
        f"({where}: {ratios}); {both}."
    )


def _skipped(comparison: Comparison, limit: int = 4) -> str | None:
    """Stages left out of the verdict as unknown, with why (never counted as failures)."""
    items = [
        f"{target} at {reason}"
        for target in comparison.ranking
        for reason in comparison.capacity[target].skipped
    ]
    if not items:
        return None
    more = f"; and {len(items) - limit} more" if len(items) > limit else ""
    return (
        "Left out of the verdict as unknown (not as failures): "
        + "; ".join(items[:limit])
        + more
        + "."
    )


def _reference(comparison: Comparison, labels: dict[str, str]) -> str | None:
    ref = comparison.reference
    if ref is None:
        return None
    parts = []
    for target in labels:
        if target == ref:
            continue
        bits = []
        cap, ref_cap = comparison.capacity.get(target), comparison.capacity.get(ref)
        ratio = comparison.capacity_ratio(target)
        if ratio is not None and cap is not None and ref_cap is not None:
            bound = "≥ " if cap.lower_bound and not ref_cap.lower_bound else ""
            bound = "≤ " if ref_cap.lower_bound and not cap.lower_bound else bound
            bits.append(f"{bound}{ratio:.2f}× its load within the SLO")
        elif cap is not None and not cap.measured:
            bits.append("not measured")
        elif cap is not None and not cap.sustains:
            bits.append("never within the SLO")
        tok = comparison.throughput_ratio(target)
        if tok is not None:
            bits.append(f"{tok:.2f}× its output tok/s at equal load (median)")
        if bits:
            parts.append(f"{target} {', '.join(bits)}")
    if not parts:
        return None
    why = "the FP16 target" if comparison.reference_why == "FP16 target" else "analysis.reference"
    return f"Against the reference {labels.get(ref, ref)} ({why}): " + "; ".join(parts) + "."


def _plan(plan: Plan, labels: dict[str, str]) -> str:
    inputs = plan.inputs
    if plan.cheapest is None:
        slo = slo_text(inputs.objectives)
        both = "both the SLO and the accuracy bar" if plan.excluded else "the SLO"
        return f"Capacity plan ({slo}): no target meets {both}, so none can be planned."
    best = plan.target(plan.cheapest)
    assert best is not None and best.output_tok_per_s is not None
    facts = []
    if inputs.peak_rps is not None and best.replicas is not None:
        bound = "at most " if best.lower_bound else ""
        facts.append(
            f"{bound}{best.replicas} GPU(s) for a {inputs.peak_rps:g} req/s peak "
            f"with {inputs.headroom:.0%} headroom"
        )
    if best.cost_per_million_tokens is not None:
        facts.append(f"${best.cost_per_million_tokens:.3g} per million output tokens")
    else:
        facts.append(f"{best.output_tok_per_s * 3600 / 1e6:.3g} M output tokens per GPU-hour")
    text = (
        f"Capacity plan ({slo_text(inputs.objectives)}): the cheapest per output token"
        f"{' that meets the accuracy bar' if plan.excluded else ''} is "
        f"{labels.get(best.target, best.target)}, {', '.join(facts)}"
    )
    if inputs.source == "config":
        text += " (SLO from the config; `quantbench plan RUN_DIR --peak-rps N` counts GPUs)"
    return text + "."


def headline(
    summary: pd.DataFrame,
    slo: SloConfig,
    comparison: Comparison | None = None,
    plan: Plan | None = None,
    notes: list[str] | None = None,
) -> list[str]:
    """The opening sentences; `comparison` is computed here when not given; `notes` (e.g.
    corrupt lines skipped in the run's files) close the list."""
    if summary.empty:
        return ["No stage completed, so there is nothing to compare."]
    comparison = comparison or compare_targets(summary, slo)
    labels = target_labels(summary, bold=True)
    lines = [_winner(comparison, labels, slo)]
    caps = comparison.capacity
    never = [t for t in comparison.ranking if caps[t].measured and not caps[t].sustains]
    if never and any(caps[t].sustains for t in comparison.ranking):
        lines.append(f"Never within the SLO at a valid stage: {', '.join(never)}.")
    unmeasured = [t for t in comparison.ranking if not caps[t].measured]
    if unmeasured:
        lines.append(f"Not measured (no valid stage, so no verdict): {', '.join(unmeasured)}.")
    skipped = _skipped(comparison)
    if skipped:
        lines.append(skipped)
    reference = _reference(comparison, target_labels(summary))
    if reference:
        lines.append(reference)
    if plan is not None:
        lines.append(_plan(plan, labels))
    lines += comparison.warnings
    invalid = int((~summary["valid"].astype(bool)).sum())
    if invalid:
        lines.append(f"{invalid} of {len(summary)} stages are invalid; see the validity table.")
    lines += notes or []
    if bool(summary["simulated"].any()):
        lines.append("Figures from simulated targets are *simulated*: no GPU was measured.")
    return lines
