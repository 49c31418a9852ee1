"""quality.json: the probe's raw measurements turned into estimates, one entry per target.

This is the contract the report reads (see README, "Speed and quality side by side"):
`targets[].perplexity`, `.ppl_delta` (against the reference), `.agreement`, `.accuracy`,
`.verdict` for the bar, and a `*_not_measurable` reason wherever a measure is missing.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from analysis.quality import (
    accuracy,
    agreement,
    bar_verdict,
    perplexity,
    perplexity_delta,
)
from analysis.speed_quality import QUALITY_FILE
from loadtest.quality import TargetMeasurement

__all__ = ["QUALITY_FILE", "TargetInfo", "build_result", "write_result"]

TargetInfo = dict[str, Any]  # name, stack, quant, simulated, api


def _perplexity(m: TargetMeasurement) -> tuple[dict[str, Any] | None, str | None]:
    if m.windows is None:
        return None, m.perplexity_error or "not measured"
    estimate = perplexity([w.nll for w in m.windows], [w.tokens for w in m.windows])
    return asdict(estimate), None


def _delta(m: TargetMeasurement, ref: TargetMeasurement | None) -> tuple[Any, str | None]:
    if ref is None:
        return None, "no reference (FP16) target: set quality.reference"
    if m.windows is None or ref.windows is None:
        return None, "perplexity not measured on this target or on the reference"
    if [w.asked for w in m.windows] != [w.asked for w in ref.windows]:
        return None, "the target scored other tokens than the reference (tokenizer differs)"
    estimate = perplexity_delta(
        [w.nll for w in m.windows], [w.nll for w in ref.windows], [w.tokens for w in m.windows]
    )
    return estimate, None


def _agreement(m: TargetMeasurement, ref: TargetMeasurement | None) -> tuple[Any, str | None]:
    if m.outputs is None:
        return None, m.agreement_error or "not measured"
    if ref is None or ref.outputs is None:
        return None, "no reference outputs to compare with"
    ids = m.output_ids if ref.output_ids is not None else None
    estimate = agreement(m.outputs, ref.outputs, ids, ref.output_ids if ids else None)
    return asdict(estimate), None


def build_result(
    text: dict[str, Any] | None,
    infos: list[TargetInfo],
    measured: dict[str, TargetMeasurement],
    not_run: dict[str, str],
    reference: str | None,
    bar: float | None,
) -> dict[str, Any]:
    """Estimates for every target in `infos` (`not_run`: those never probed, with why);
    `text`: what was asked (`ProbePlan.describe()`)."""
    ref = measured.get(reference) if reference else None
    targets = []
    for info in infos:
        name = info["name"]
        entry: dict[str, Any] = {**info, "reference": name == reference}
        m = measured.get(name)
        if m is None:
            why = not_run.get(name, "not probed")
            for measure in ("perplexity", "ppl_delta", "agreement", "accuracy"):
                entry[measure], entry[f"{measure}_not_measurable"] = None, why
            entry["verdict"], entry["verdict_reason"] = "not measurable", why
            targets.append(entry)
            continue
        entry["perplexity"], entry["perplexity_not_measurable"] = _perplexity(m)
        delta, entry["ppl_delta_not_measurable"] = _delta(m, ref)
        entry["ppl_delta"] = (
            None if delta is None else {**asdict(delta), "significant": delta.significant}
        )
        entry["agreement"], entry["agreement_not_measurable"] = _agreement(m, ref)
        if entry["agreement"] is not None and m.divergence_error:
            entry["agreement"]["first_divergence_not_measurable"] = m.divergence_error
        if m.task_correct is not None:
            entry["accuracy"], entry["accuracy_not_measurable"] = (
                asdict(accuracy(m.task_correct)),
                None,
            )
        else:
            entry["accuracy"] = None
            entry["accuracy_not_measurable"] = m.tasks_error or "no task file (quality.tasks)"
        if name == reference:
            entry["verdict"], entry["verdict_reason"] = "reference", "the FP16 reference"
        elif bar is None:
            entry["verdict"], entry["verdict_reason"] = None, "no accuracy bar given"
        else:
            entry["verdict"], entry["verdict_reason"] = bar_verdict(delta, bar)
            if delta is None:
                entry["verdict_reason"] = entry["ppl_delta_not_measurable"]
        entry["windows"] = None if m.windows is None else [asdict(w) for w in m.windows]
        entry["seconds"] = m.seconds
        entry["raw"] = {"outputs": m.outputs, "task_outputs": m.task_outputs}
        targets.append(entry)
    meets = [t["name"] for t in targets if t["verdict"] == "meets"]
    return {
        "simulated": any(t.get("simulated") for t in targets),
        "text": text,
        "reference": reference,
        "max_ppl_increase": bar,
        "meets_bar": meets if bar is not None else None,
        "targets": targets,
    }


def write_result(out_dir: Path, result: dict[str, Any]) -> Path:
    path = out_dir / QUALITY_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(path)
    return path
