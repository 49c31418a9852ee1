"""Speed and quality side by side (pure): each target's perplexity change against FP16 beside
the highest request rate it serves within the SLO per GPU, and, for an accuracy bar, the
target that serves the most among those that meet it.

The quality side comes from `quality.json` (written by `quantbench quality`, or by the probe
that `quantbench run` runs after each target's stages); the speed side from the capacity plan
(its SLO, on valid stages). The bar is met when the whole 95% CI of the change is within it
(`analysis.quality.bar_verdict`): a target whose interval straddles the bar is *uncertain*,
one without a change against FP16 *not measurable*; neither is ever counted as meeting it.
The FP16 reference meets every bar by definition.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis.capacity import Capacity, slo_text
from analysis.plan import Plan, PlanInputs, TargetPlan
from analysis.quality import DeltaEstimate, Verdict, bar_verdict
from analysis.rundir import RunDirError

__all__ = [
    "QUALITY_FILE",
    "STANDARD_BARS",
    "BarDecision",
    "SpeedQuality",
    "TargetQuality",
    "decide",
    "decision_line",
    "load_quality",
    "resolve_bar",
    "speed_quality",
]

QUALITY_FILE = "quality.json"
STANDARD_BARS = (0.01, 0.02, 0.05)  # rows of the decision table besides the user's own bar
_ELIGIBLE = ("meets", "reference")


def load_quality(run_dir: Path) -> dict[str, Any] | None:
    """quality.json of a run directory, or None when the run has none."""
    path = run_dir / QUALITY_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunDirError(f"{path}: not valid JSON ({exc}); delete it or probe again") from exc
    if not isinstance(data, dict) or not isinstance(data.get("targets"), list):
        raise RunDirError(f"{path}: not a quality.json (no `targets` list); delete it")
    return data


def resolve_bar(
    flag: float | None, plan_inputs: PlanInputs | None, config: dict[str, Any]
) -> tuple[float | None, str]:
    """The accuracy bar and where it came from: `report --max-ppl-increase`, else the plan's
    (`plan --max-ppl-increase`, kept in plan.json), else `quality.max_ppl_increase`."""
    if flag is not None:
        return flag, "--max-ppl-increase"
    if plan_inputs is not None and plan_inputs.max_ppl_increase is not None:
        return plan_inputs.max_ppl_increase, "quantbench plan --max-ppl-increase"
    section = config.get("quality") or {}
    bar = section.get("max_ppl_increase") if isinstance(section, dict) else None
    return (float(bar), "quality.max_ppl_increase") if bar is not None else (None, "")


@dataclass(frozen=True)
class TargetQuality:
    """One target of the run: its perplexity change against FP16 (or why there is none) and
    the highest request rate it serves within the SLO per GPU."""

    target: str
    quant: str
    simulated: bool
    reference: bool
    perplexity: float | None
    delta: DeltaEstimate | None
    not_measurable: str | None  # why there is no change against FP16 (None: there is one)
    capacity: Capacity | None

    @property
    def max_rps(self) -> float | None:
        cap = self.capacity
        return cap.req_per_s if cap is not None and cap.sustains else None

    def verdict(self, bar: float) -> tuple[Verdict, str]:
        if self.reference:
            return "reference", "the FP16 reference"
        if self.delta is None:
            return "not measurable", self.not_measurable or "no perplexity change against FP16"
        return bar_verdict(self.delta, bar)


@dataclass(frozen=True)
class BarDecision:
    """For one bar: the target serving the most req/s within the SLO per GPU among those that
    meet it (None: none does), and every other target by why it was not chosen."""

    bar: float
    choice: str | None
    max_rps: float | None
    lower_bound: bool  # the choice met the SLO at every tested load: its rate is at least this
    meets: list[str]  # the reference and every target that meets the bar
    misses: list[str]
    uncertain: list[str]
    not_measurable: list[str]
    no_capacity: list[str]  # meet the bar but never within the SLO (or not measured)

    def to_json(self) -> dict[str, Any]:
        return {
            "max_ppl_increase": self.bar,
            "choice": self.choice,
            "max_rps_per_gpu": self.max_rps,
            "max_rps_is_lower_bound": self.lower_bound,
            "meets": self.meets,
            "misses": self.misses,
            "uncertain": self.uncertain,
            "not_measurable": self.not_measurable,
            "meets_bar_but_not_the_slo": self.no_capacity,
        }


def decide(targets: list[TargetQuality], bar: float) -> BarDecision:
    """The decision for `bar`: most req/s within the SLO per GPU among eligible targets (ties
    go to run order)."""
    groups: dict[str, list[str]] = {"meets": [], "misses": [], "uncertain": [], "none": []}
    no_capacity: list[str] = []
    best: TargetQuality | None = None
    for t in targets:
        verdict, _ = t.verdict(bar)
        key = (
            "meets" if verdict in _ELIGIBLE else "none" if verdict == "not measurable" else verdict
        )
        groups[key].append(t.target)
        if key != "meets":
            continue
        if t.max_rps is None:
            no_capacity.append(t.target)
        elif best is None or (best.max_rps or 0.0) < t.max_rps:
            best = t
    return BarDecision(
        bar,
        best.target if best else None,
        best.max_rps if best else None,
        bool(best and best.capacity and best.capacity.lower_bound),
        groups["meets"],
        groups["misses"],
        groups["uncertain"],
        groups["none"],
        no_capacity,
    )


@dataclass(frozen=True)
class SpeedQuality:
    """The speed–quality view of a run. `bar` None: no accuracy bar was given (the decision
    table still shows the standard bars; nothing is excluded from the plan)."""

    bar: float | None
    bar_source: str
    reference: str | None
    text: dict[str, Any] | None  # quality.json's `text`: path, tokens, window, stride…
    simulated: bool
    targets: list[TargetQuality]
    decisions: list[BarDecision]
    note: str | None = None  # why there is no quality data, when there is none
    slo: str = ""
    by_name: dict[str, TargetQuality] = field(default_factory=dict, repr=False)

    @property
    def decision(self) -> BarDecision | None:
        """The decision for the user's bar (None without a bar)."""
        return next((d for d in self.decisions if d.bar == self.bar), None)

    def excluded(self) -> dict[str, str]:
        """Targets the bar rules out of the plan, with why (empty without a bar)."""
        if self.bar is None:
            return {}
        out = {}
        for t in self.targets:
            verdict, reason = t.verdict(self.bar)
            if verdict not in _ELIGIBLE:
                out[t.target] = f"{verdict}: {reason}"
        return out

    def to_json(self) -> dict[str, Any]:
        decision = self.decision
        rows = []
        for t in self.targets:
            verdict, reason = t.verdict(self.bar) if self.bar is not None else (None, "")
            rows.append(
                {
                    "target": t.target,
                    "quant": t.quant,
                    "reference": t.reference,
                    "perplexity": t.perplexity,
                    "ppl_delta": _delta_json(t.delta),
                    "ppl_delta_not_measurable": t.not_measurable,
                    "max_rps_per_gpu": t.max_rps,
                    "capacity": t.capacity.to_json() if t.capacity is not None else None,
                    "verdict": verdict,
                    "verdict_reason": reason or None,
                }
            )
        return {
            "max_ppl_increase": self.bar,
            "bar_source": self.bar_source or None,
            "reference": self.reference,
            "slo": self.slo,
            "text": self.text,
            "note": self.note,
            "choice": decision.choice if decision else None,
            "targets": rows,
            "decisions": [d.to_json() for d in self.decisions],
        }


def _delta_json(d: DeltaEstimate | None) -> dict[str, Any] | None:
    return None if d is None else {"value": d.value, "ci_low": d.ci_low, "ci_high": d.ci_high}


def _delta(entry: dict[str, Any]) -> DeltaEstimate | None:
    d = entry.get("ppl_delta")
    if not isinstance(d, dict) or d.get("value") is None:
        return None
    return DeltaEstimate(float(d["value"]), d.get("ci_low"), d.get("ci_high"))


def _target(
    name: str,
    plan_target: TargetPlan,
    entry: dict[str, Any] | None,
    reference: str | None,
    why: str,
) -> TargetQuality:
    capacity = plan_target.capacity
    if entry is None:
        return TargetQuality(name, plan_target.quant, plan_target.simulated, False, None, None,
                             why, capacity)  # fmt: skip
    delta = _delta(entry)
    ppl = entry.get("perplexity")
    reason = None
    if delta is None:  # the target's own reason first (e.g. its API has no prompt log-probs)
        own = entry.get("perplexity_not_measurable") if ppl is None else None
        reason = own or entry.get("ppl_delta_not_measurable") or "no change against FP16"
    return TargetQuality(
        name,
        plan_target.quant,
        plan_target.simulated,
        name == reference,
        float(ppl["value"]) if isinstance(ppl, dict) and ppl.get("value") is not None else None,
        delta,
        reason,
        capacity,
    )


def speed_quality(
    quality: dict[str, Any] | None, plan: Plan, bar: float | None, bar_source: str = ""
) -> SpeedQuality:
    """The view for every target of `plan` (its capacities under the plan's SLO)."""
    entries = {str(e.get("name")): e for e in (quality or {}).get("targets", [])}
    reference = (quality or {}).get("reference")
    if quality is None:
        note = (
            "no quality.json in the run directory: add a `quality:` section to bench.yaml (the "
            "probe runs after each target's load stages), or copy the quality.json that "
            "`quantbench quality` wrote into it"
        )
        why = "no quality.json in the run directory"
    else:
        note, why = None, "not probed (no entry in quality.json)"
    targets = [_target(t.target, t, entries.get(t.target), reference, why) for t in plan.targets]
    bars = sorted({*STANDARD_BARS, *([bar] if bar is not None else [])})
    simulated = any(t.simulated for t in targets) or bool((quality or {}).get("simulated"))
    return SpeedQuality(
        bar=bar,
        bar_source=bar_source,
        reference=reference,
        text=(quality or {}).get("text"),
        simulated=simulated,
        targets=targets,
        decisions=[decide(targets, b) for b in bars],
        note=note,
        slo=slo_text(plan.inputs.objectives),
        by_name={t.target: t for t in targets},
    )


def _names(names: list[str]) -> str:
    return ", ".join(names)


def decision_line(view: SpeedQuality) -> str | None:
    """One headline sentence for the user's bar (None without a bar)."""
    decision = view.decision
    if decision is None:
        return None
    bar = f"Accuracy bar (perplexity ≤ +{decision.bar:.2%} vs FP16)"
    if decision.choice is None:
        text = f"{bar}: no target both meets it and serves load within the SLO"
    else:
        rate = view.by_name[decision.choice].capacity
        shown = rate.text("req_per_s", "req/s", note=False) if rate is not None else "?"
        text = (
            f"{bar}: **{decision.choice}** serves the most load within the SLO per GPU "
            f"({shown}) among the targets that meet it"
        )
    others = [
        f"{label}: {_names(names)}"
        for label, names in (
            ("misses", decision.misses),
            ("uncertain", decision.uncertain),
            ("not measurable", decision.not_measurable),
        )
        if names
    ]
    return text + (f" ({'; '.join(others)})" if others else "") + "."
