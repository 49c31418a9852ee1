"""What report.md, report.html and plan.md say, section by section, from computed results.

Formatting only: every figure arrives computed (summary, comparison, plan, flags); the
`document` module turns the blocks into Markdown or a self-contained HTML page.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from analysis.capacity import load_unit, slo_text
from analysis.compare import Comparison
from analysis.config import SloConfig
from analysis.document import Block, Bullets, Heading, Image, Paragraph, Table, to_html, to_markdown
from analysis.headline import target_labels
from analysis.plan import Plan
from analysis.stats import PERCENTILES
from analysis.summary import STAT_METRICS, stat_column

__all__ = [
    "Flag",
    "ReportInput",
    "plan_blocks",
    "render_html",
    "render_markdown",
    "render_plan_markdown",
    "report_blocks",
]


class Flag(NamedTuple):
    """A reconciliation flag: a stage whose client figures disagree with the server's."""

    target: str
    stage: int | None
    reason: str


@dataclass(frozen=True)
class ReportInput:
    title: str
    headline: list[str]
    summary: pd.DataFrame
    plots: dict[str, Path]
    meta: list[tuple[str, str]]
    comparison: Comparison | None = None
    plan: Plan | None = None
    flags: list[Flag] = field(default_factory=list)
    slo: SloConfig | None = None
    server: pd.DataFrame | None = None  # analysis.server.RECONCILE_COLUMNS rows


def _num(value: Any, digits: int = 1) -> str:
    if value is None or isinstance(value, bool):
        return "n/a" if value is None else str(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(number):
        return "n/a"
    if abs(number) >= 1000:
        return f"{number:,.0f}"
    return f"{number:.{digits}f}"


def _ratio(value: Any) -> str:
    text = _num(value, 2)
    return "–" if text == "n/a" else f"{text}×"


def _unit(summary: pd.DataFrame) -> str:
    modes = summary["mode"].dropna().unique() if len(summary) else []
    return load_unit(str(modes[0])) if len(modes) == 1 else "load"


def _comparison(report: ReportInput, labels: dict[str, str]) -> list[Block]:
    comparison = report.comparison
    if comparison is None or comparison.table.empty:
        return []
    ref = comparison.reference
    headers = [_unit(report.summary), "target", "req/s", "out tok/s"]
    headers += ["tok/s ×ref"] if ref else []
    headers += ["TTFT p95"] + (["×ref"] if ref else []) + ["TPOT p95"] + (["×ref"] if ref else [])
    headers += ["E2E p95", "errors", "goodput/s", "valid"]
    rows = []
    for r in comparison.table.to_dict("records"):
        row = [_num(r["load"], 0 if float(r["load"]).is_integer() else 1), labels[r["target"]]]
        row += [_num(r["req_per_s"]), _num(r["output_tok_per_s"])]
        row += [_ratio(r["output_tok_per_s_ratio"])] if ref else []
        row += [_num(r["ttft_p95_ms"])] + ([_ratio(r["ttft_p95_ratio"])] if ref else [])
        row += [_num(r["tpot_p95_ms"])] + ([_ratio(r["tpot_p95_ratio"])] if ref else [])
        row += [_num(r["e2e_p95_ms"]), f"{100 * float(r['error_rate']):.1f}%"]
        row += [_num(r["goodput_req_per_s"]), "yes" if bool(r["valid"]) else "NO"]
        rows.append(row)
    note = (
        f"Ratios: target ÷ reference **{ref}** ({comparison.reference_why}) at the same load. "
        if ref
        else "No reference target: give one `quant: fp16` or set `analysis.reference`. "
    )
    note += "Latencies in ms from raw client records, warm-up excluded; n/a = too few samples."
    return [Heading("Comparison at each load"), Table(headers, rows), Paragraph(note)]


def _capacity(report: ReportInput, labels: dict[str, str]) -> list[Block]:
    comparison = report.comparison
    if comparison is None or not comparison.capacity:
        return []
    unit = _unit(report.summary)
    headers = [f"max {unit}", "req/s there", "out tok/s there"]
    headers = ["target", *headers] + (["× reference"] if comparison.reference else [])
    headers.append("what limits it")
    rows = []
    for target in comparison.ranking:
        cap = comparison.capacity[target]
        row = [
            labels[target],
            cap.text("load"),
            cap.text("req_per_s"),
            cap.text("output_tok_per_s"),
        ]
        if comparison.reference:
            row.append(_ratio(comparison.capacity_ratio(target)))
        rows.append([*row, cap.limited_by])
    slo = slo_text(report.slo) if report.slo is not None else "the config's SLO"
    return [
        Heading("Highest load within the SLO"),
        Paragraph(
            f"SLO: {slo}, on valid stages. ≈ = interpolated linearly between the last stage "
            "that met the SLO and the first that did not; ≥ = every tested load met it; "
            "none = the lowest load already failed."
        ),
        Table(headers, rows),
    ]


def plan_blocks(
    plan: Plan, labels: dict[str, str], title: str = "Capacity plan", level: int = 2
) -> list[Block]:
    """The capacity plan as a section of the report, or (level 1) as plan.md."""
    inputs = plan.inputs
    facts = [
        f"SLO: {slo_text(inputs.objectives)} (p95, valid stages)"
        + (" — from the run's config" if inputs.source == "config" else ""),
        f"peak: {inputs.peak_rps:g} req/s" if inputs.peak_rps else "peak: not given (no GPU count)",
        f"headroom: {inputs.headroom:.0%} of each replica's SLO-limited rate kept spare",
        f"GPU-hour cost: ${inputs.gpu_hour_cost:g}"
        if inputs.gpu_hour_cost
        else "GPU-hour cost: not given (output tokens per GPU-hour shown instead)",
    ]
    cost_header = "$ per M out tok" if inputs.gpu_hour_cost else "M out tok per GPU-hour"
    headers = ["target", "max req/s per GPU", "GPUs for peak", "out tok/s at max", cost_header]
    rows = []
    for t in plan.targets:
        bound = "≤ " if t.lower_bound else ""
        gpus = f"{bound}{t.replicas}" if t.replicas is not None else "n/a"
        if inputs.gpu_hour_cost:
            cost = _num(t.cost_per_million_tokens, 3)
        else:
            per_hour = t.output_tok_per_s * 3600 / 1e6 if t.output_tok_per_s else None
            cost = _num(per_hour, 2)
        rows.append(
            [
                labels.get(t.target, t.target)
                + (" ← cheapest" if t.target == plan.cheapest else ""),
                t.capacity.text("req_per_s"),
                gpus,
                t.capacity.text("output_tok_per_s"),
                cost,
            ]
        )
    verdict = (
        f"Cheapest per output token: {labels.get(plan.cheapest, plan.cheapest)}."
        if plan.cheapest
        else "No target meets the SLO, so none can be planned."
    )
    notes = (
        "GPUs = ceil(peak ÷ (max req/s × (1 − headroom))); cost per million output tokens = "
        "GPU-hour cost ÷ (output tok/s at max × 3600) × 10⁶. One replica per GPU, every target "
        "on the same GPU type; ≥ / ≤ mark targets that met the SLO at every tested load (the "
        "real rate is higher, the GPU count an upper bound)."
    )
    return [
        Heading(title, level),
        Bullets(facts),
        Table(headers, rows),
        Paragraph(verdict),
        Paragraph(notes),
    ]


def _stats(summary: pd.DataFrame, labels: dict[str, str]) -> list[Block]:
    headers = ["target", _unit(summary), "metric", "scope", "n"]
    headers += [f"p{p}" for p in PERCENTILES] + ["p95 95% CI", "p99 95% CI"]
    rows = []
    for r in summary.to_dict("records"):
        for scope, metrics in STAT_METRICS.items():
            for metric in metrics:
                if stat_column(metric, scope, "n") not in r:
                    continue
                row = [labels[r["target"]], _num(r["load"], 0), metric.upper()]
                row.append("all" if scope else "ok")
                row.append(str(int(r[stat_column(metric, scope, "n")] or 0)))
                row += [_num(r[stat_column(metric, scope, f"p{p}")]) for p in PERCENTILES]
                for p in (95, 99):
                    lo, hi = (r[stat_column(metric, scope, f"p{p}_{b}")] for b in ("lo", "hi"))
                    row.append("n/a" if _num(lo) == "n/a" else f"{_num(lo)}–{_num(hi)}")
                rows.append(row)
    return [
        Heading("Per-stage statistics"),
        Paragraph(
            "Milliseconds. `ok`: successful requests only; `all`: every scheduled request, a "
            "failure counted as its timeout (so failing fast cannot look fast). CI: "
            "distribution-free order-statistic 95% interval; n/a below 59 samples for p95, "
            "299 for p99. ITL pools every token gap of the stage."
        ),
        Table(headers, rows),
    ]


def _validity(summary: pd.DataFrame, labels: dict[str, str]) -> list[Block]:
    headers = ["target", "stage", _unit(summary), "requests", "errors", "valid", "reason"]
    rows = [
        [
            labels[r["target"]],
            str(r["stage"]),
            _num(r["load"], 0),
            str(r["requests"]),
            str(r["errors"]),
            "yes" if bool(r["valid"]) else "NO",
            str(r["invalid_reason"] or "") if not bool(r["valid"]) else "",
        ]
        for r in summary.to_dict("records")
    ]
    return [Heading("Stage validity"), Table(headers, rows)]


def _flags(flags: list[Flag], labels: dict[str, str]) -> list[Block]:
    """HOOK: server-metric reconciliation flags, passed in by the pipeline."""
    blocks: list[Block] = [Heading("Reconciliation flags")]
    if not flags:
        return [*blocks, Paragraph("None raised.")]
    rows = [
        [labels.get(f.target, f.target), "—" if f.stage is None else str(f.stage), f.reason]
        for f in flags
    ]
    return [*blocks, Table(["target", "stage", "reason"], rows)]


def _server(rows: pd.DataFrame | None, labels: dict[str, str]) -> list[Block]:
    """The server's own figures beside the client's (server quantiles bucket-interpolated)."""
    if rows is None or rows.empty:
        return []
    headers = [
        "target", "stage", "client ok", "server finished", "client TTFT mean",
        "server TTFT mean", "client TTFT p95", "server TTFT p95 (buckets)", "preempted",
        "restart",
    ]  # fmt: skip
    table = [
        [
            labels.get(str(r.target), str(r.target)),
            str(r.stage),
            _num(r.client_ok, 0),
            _num(r.server_requests_finished, 0),
            _num(r.client_ttft_mean_ms),
            _num(r.server_ttft_mean_ms),
            _num(r.client_ttft_p95_ms),
            _num(r.server_ttft_p95_ms),
            _num(r.server_preemptions, 0),
            "YES" if bool(r.restarted) else "no",
        ]
        for r in rows.itertuples()
    ]
    note = ("From each target's /metrics: requests that finished in the stage's measured window; "
            "server quantiles are interpolated within histogram buckets; 'preempted': running "
            "requests the server evicted because its KV cache was full (vLLM), each one a "
            "pause in its stream.")  # fmt: skip
    return [Heading("Server-side figures"), Paragraph(note), Table(headers, table)]


def report_blocks(report: ReportInput) -> list[Block]:
    """The whole report, in reading order."""
    labels = target_labels(report.summary)
    blocks: list[Block] = [Heading(report.title, 1), Bullets(report.headline)]
    if report.summary.empty:
        return [*blocks, Heading("Run"), Bullets([f"{k}: {v}" for k, v in report.meta])]
    blocks += _comparison(report, labels)
    blocks += _capacity(report, labels)
    if report.plan is not None:
        blocks += plan_blocks(report.plan, labels)
    if report.plots:
        blocks.append(Heading("Charts"))
        blocks += [Image(alt, path) for alt, path in report.plots.items()]
    blocks += _stats(report.summary, labels)
    blocks += _validity(report.summary, labels)
    blocks += _server(report.server, labels)
    blocks += _flags(report.flags, labels)
    blocks += [Heading("Run"), Bullets([f"{key}: {value}" for key, value in report.meta])]
    return blocks


def render_markdown(report: ReportInput) -> str:
    return to_markdown(report_blocks(report))


def render_html(report: ReportInput) -> str:
    """One self-contained page: styles inline, plots embedded as data URIs; opens offline."""
    return to_html(report.title, report_blocks(report))


def render_plan_markdown(plan: Plan, summary: pd.DataFrame, title: str = "Capacity plan") -> str:
    return to_markdown(plan_blocks(plan, target_labels(summary), title, level=1))
