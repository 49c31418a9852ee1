"""quality.json for people: the terminal table, the decision line and quality.md."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["decision_line", "print_quality", "quality_markdown"]


def _ppl(t: dict[str, Any]) -> str:
    p = t["perplexity"]
    if p is None:
        return "not measurable"
    if p["ci_low"] is None:
        return f"{p['value']:.3f}"
    return f"{p['value']:.3f} ({p['ci_low']:.2f}–{p['ci_high']:.2f})"


def _delta(t: dict[str, Any]) -> str:
    if t["reference"]:
        return "reference"
    d = t["ppl_delta"]
    if d is None:
        return "—"
    if d["ci_low"] is None:
        return f"{d['value']:+.2%}"
    mark = "" if d["significant"] else ", n.s."
    return f"{d['value']:+.2%} ({d['ci_low']:+.1%}…{d['ci_high']:+.1%}{mark})"


def _agree(t: dict[str, Any]) -> tuple[str, str]:
    a = t["agreement"]
    if a is None:
        return "—", "—"
    median = a["first_divergence_median"]
    return (
        f"{a['exact_match_rate']:.0%} of {a['prompts']}",
        "—" if median is None else f"{median:g}",
    )


def _acc(t: dict[str, Any]) -> str:
    a = t["accuracy"]
    return "—" if a is None else f"{a['rate']:.0%} ({a['correct']}/{a['tasks']})"


def _why(t: dict[str, Any]) -> str:
    reasons = [
        f"{m}: {t[f'{m}_not_measurable']}"
        for m in ("perplexity", "agreement")
        if t.get(f"{m}_not_measurable")
    ]
    return "; ".join(reasons) or "—"


def decision_line(result: dict[str, Any]) -> str:
    bar = result["max_ppl_increase"]
    if bar is None:
        return "accuracy bar: none given (e.g. --max-ppl-increase 2%)"
    groups: dict[str, list[str]] = {}
    for t in result["targets"]:
        if t["verdict"] not in (None, "reference"):
            groups.setdefault(t["verdict"], []).append(t["name"])
    meets = ", ".join(groups.get("meets", [])) or "none"
    rest = "; ".join(f"{k}: {', '.join(v)}" for k, v in groups.items() if k != "meets")
    return f"accuracy bar +{bar:.2%} perplexity vs FP16: meets: {meets}" + (
        f"; {rest}" if rest else ""
    )


def print_quality(result: dict[str, Any], console: Console) -> None:
    text = result["text"]
    label = " (simulated)" if result["simulated"] else ""
    table = Table(
        title=f"Quality{label}: perplexity over {text['scored_tokens']} tokens, window "
        f"{text['window']}, stride {text['stride']}; greedy agreement on {text['prompts']} "
        f"prompts x {text['max_tokens']} tokens",
        title_justify="left",
    )
    for column in ("target", "quant", "perplexity (95% CI)", "Δ vs FP16 (95% CI)",
                   "exact match", "1st diverg.", "accuracy", "not measurable"):  # fmt: skip
        table.add_column(column, overflow="fold")
    for t in result["targets"]:
        exact, divergence = _agree(t)
        table.add_row(t["name"], t.get("quant") or "", _ppl(t), _delta(t), exact, divergence,
                      _acc(t), _why(t))  # fmt: skip
    console.print(table)
    console.print(decision_line(result))


def quality_markdown(result: dict[str, Any]) -> str:
    text = result["text"]
    label = " (simulated)" if result["simulated"] else ""
    lines = [
        f"# Quality{label}",
        "",
        f"Perplexity of `{text['path']}` ({text['tokens']} tokens, cut by {text['tokenizer']}): "
        f"windows of {text['window']} tokens every {text['stride']} tokens, each scoring the "
        f"tokens the previous one did not ({text['windows']} windows, {text['scored_tokens']} "
        "scored tokens); 95% CIs by bootstrap over windows, Δ paired with the reference.",
        f"Agreement: greedy outputs on {text['prompts']} prompts, {text['max_tokens']} tokens "
        f"each, compared with the reference ({result['reference'] or 'none'}).",
        "",
        "| target | quant | perplexity (95% CI) | Δ vs FP16 (95% CI) | exact match | "
        "first divergence, median token | accuracy | not measurable |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in result["targets"]:
        exact, divergence = _agree(t)
        cells = [t["name"], t.get("quant") or "", _ppl(t), _delta(t), exact, divergence,
                 _acc(t), _why(t)]  # fmt: skip
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    lines += ["", decision_line(result), ""]
    return "\n".join(lines)
