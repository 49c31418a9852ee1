"""The report's "Speed and quality" section (formatting only): how quality was measured, each
target's perplexity change beside its load within the SLO, the decision for the user's
accuracy bar, the decision table across bars, and the chart."""

from __future__ import annotations

from pathlib import Path

from analysis.document import Block, Heading, Image, Paragraph, Table
from analysis.speed_quality import BarDecision, SpeedQuality, TargetQuality

__all__ = ["delta_text", "speed_quality_blocks"]


def delta_text(t: TargetQuality) -> str:
    """`+2.41% (+1.9% … +2.9%)`, `reference`, or `not measurable`."""
    if t.reference:
        return "reference"
    d = t.delta
    if d is None:
        return "not measurable"
    if d.ci_low is None or d.ci_high is None:
        return f"{d.value:+.2%} (no CI: too few windows)"
    return f"{d.value:+.2%} ({d.ci_low:+.1%} … {d.ci_high:+.1%})"


def _rate(t: TargetQuality) -> str:
    cap = t.capacity
    return "not measured" if cap is None else cap.text("req_per_s", note=False)


def _method(view: SpeedQuality) -> str:
    text = view.text or {}
    where = (
        f"Perplexity of `{Path(str(text.get('path', '?'))).name}` ({text.get('tokens', '?')} "
        f"tokens, cut by {text.get('tokenizer', '?')}): windows of {text.get('window', '?')} "
        f"tokens every {text.get('stride', '?')} tokens, each scoring only the tokens the "
        f"previous one did not reach ({text.get('windows', '?')} windows, "
        f"{text.get('scored_tokens', '?')} scored tokens). "
    )
    return (
        where + f"Δ = perplexity ÷ the FP16 reference's ({view.reference or 'none'}) − 1 over the "
        "same windows, with a 95% CI from a paired bootstrap over windows. Load: the highest "
        f"request rate each target serves within the SLO ({view.slo}) on one GPU, as in the "
        "capacity plan. A target meets an accuracy bar when its whole interval is within it, "
        "*misses* it when the whole interval is above, and is *uncertain* when the interval "
        "straddles it (a longer text decides); *not measurable* means its API could not give "
        "prompt log-probs (or it was not probed). Neither uncertain nor not measurable ever "
        "counts as meeting the bar. ≥: the target met the SLO at every tested load, so its "
        "limit is higher than shown (add higher stages before trusting a choice between ≥ "
        "figures)."
    )


def _names(names: list[str], labels: dict[str, str]) -> str:
    return ", ".join(labels.get(n, n) for n in names) or "—"


def _decision_row(d: BarDecision, view: SpeedQuality, labels: dict[str, str]) -> list[str]:
    yours = d.bar == view.bar
    bar = f"+{d.bar:.2%}" + (" (yours)" if yours else "")
    choice = labels.get(d.choice, d.choice) if d.choice else "none"
    rate = _rate(view.by_name[d.choice]) if d.choice else "—"
    if yours:  # the label may carry *(simulated)*: only the bar is set in bold
        bar = f"**{bar}**"
    return [
        bar,
        choice,
        rate,
        _names(d.meets, labels),
        _names(d.uncertain, labels),
        _names(d.not_measurable, labels),
        _names(d.misses, labels),
    ]


def _decision_text(view: SpeedQuality, labels: dict[str, str]) -> str:
    d = view.decision
    if d is None:
        return (
            "No accuracy bar given: the table below shows the decision for common bars. Set "
            "yours with `--max-ppl-increase 2%` (`quantbench report` or `plan`) or "
            "`quality.max_ppl_increase` in bench.yaml."
        )
    source = f" (from {view.bar_source})" if view.bar_source else ""
    if d.choice is None:
        return (
            f"**Accuracy bar +{d.bar:.2%}{source}: no target both meets it and serves load "
            "within the SLO.**"
        )
    return (
        f"**Accuracy bar +{d.bar:.2%}{source}: {labels.get(d.choice, d.choice)} serves the "
        f"most load within the SLO per GPU ({_rate(view.by_name[d.choice])} req/s) among the "
        "targets that meet it.**"
    )


def speed_quality_blocks(
    view: SpeedQuality, labels: dict[str, str], chart: tuple[str, Path] | None = None
) -> list[Block]:
    blocks: list[Block] = [Heading("Speed and quality")]
    if view.note is not None:
        blocks.append(Paragraph(f"No quality measurements: {view.note}."))
    if view.text is not None:
        blocks.append(Paragraph(_method(view)))
    bar = view.bar
    headers = ["target", "perplexity", "Δ vs FP16 (95% CI)", "max req/s within SLO per GPU"]
    headers += [f"bar +{bar:.2%}", "why"] if bar is not None else ["why not measurable"]
    rows = []
    for t in view.targets:
        row = [labels.get(t.target, t.target)]
        row += ["n/a" if t.perplexity is None else f"{t.perplexity:.3f}", delta_text(t), _rate(t)]
        if bar is not None:
            verdict, reason = t.verdict(bar)
            row += [verdict, "" if verdict in ("meets", "reference") else reason]
        else:
            row.append(t.not_measurable or "")
        rows.append(row)
    blocks += [Table(headers, rows), Paragraph(_decision_text(view, labels))]
    decision_headers = ["accuracy bar", "serves the most within the SLO", "req/s per GPU",
                        "meet the bar", "uncertain", "not measurable", "miss"]  # fmt: skip
    blocks.append(Table(decision_headers, [_decision_row(d, view, labels) for d in view.decisions]))
    if chart is not None:
        blocks.append(Image(*chart))
    return blocks
