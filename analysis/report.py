"""What report.md, report.html and plan.md say, section by section, from computed results.

Formatting only: every figure arrives computed (summary, comparison, pairs, error breakdown,
plan, flags); the `document` module turns the blocks into Markdown or a self-contained HTML
page. Every table shows a stage's figures from the same requests (MEASUREMENT.md): those it
scheduled after its warm-up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from analysis.capacity import load_unit, slo_text
from analysis.compare import Comparison, ratio_column
from analysis.config import DEFAULT_PERCENTILES, SloConfig, percentile_word
from analysis.document import Block, Bullets, Heading, Image, Paragraph, Table, to_html, to_markdown
from analysis.errors import BREAKDOWN_COLUMNS
from analysis.gpu_report import energy_plan_blocks, gpu_blocks
from analysis.headline import target_labels
from analysis.plan import Plan, PlanInputs
from analysis.search_view import Search, search_blocks
from analysis.speed_quality import SpeedQuality
from analysis.speed_quality_view import speed_quality_blocks
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


@dataclass(frozen=True, kw_only=True)
class ReportInput:
    """Everything a report shows, computed. `setup`: what was measured (model, lengths,
    dataset, GPU…), shown under the headline; `meta`: the run's bookkeeping, shown last."""

    title: str
    headline: list[str]
    summary: pd.DataFrame
    plots: dict[str, Path] = field(default_factory=dict)
    meta: list[tuple[str, str]] = field(default_factory=list)
    setup: list[tuple[str, str]] = field(default_factory=list)
    comparison: Comparison | None = None
    plan: Plan | None = None
    flags: list[Flag] = field(default_factory=list)
    slo: SloConfig | None = None
    server: pd.DataFrame | None = None  # analysis.server.RECONCILE_COLUMNS rows
    errors: pd.DataFrame | None = None  # analysis.errors.BREAKDOWN_COLUMNS rows
    percentiles: list[float] = field(default_factory=lambda: list(DEFAULT_PERCENTILES))
    quality: SpeedQuality | None = None  # the speed-quality section, when the run has one
    quality_chart: tuple[str, Path] | None = None  # (title, PNG) of its chart
    base_comparison: list[Block] = field(default_factory=list)  # from `quantbench compare`
    trace: list[Block] = field(default_factory=list)  # the replayed trace (analysis.traffic)
    turns: list[Block] = field(default_factory=list)  # TTFT by conversation turn
    searches: dict[str, Search] = field(default_factory=dict)  # `load.mode: search` paths


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


def _share(value: Any) -> str:
    """A fraction as a percentage, `n/a` when unknown."""
    text = _num(value, 3)
    return text if text == "n/a" else f"{100 * float(value):.1f}%"


def _ratio(value: Any) -> str:
    text = _num(value, 2)
    return "–" if text == "n/a" else f"{text}×"


def _unit(summary: pd.DataFrame) -> str:
    modes = summary["mode"].dropna().unique() if len(summary) else []
    return load_unit(str(modes[0])) if len(modes) == 1 else "load"


def _objective_columns(report: ReportInput) -> list[tuple[str, str]]:
    """(summary column, header) of the latencies the comparison shows: p95 TTFT and TPOT,
    then any other SLO objective (e.g. TTFT p99)."""
    shown = [("ttft_p95_ms", "TTFT p95"), ("tpot_p95_ms", "TPOT p95")]
    objectives = report.slo.objectives() if report.slo is not None else []
    return shown + [(o.column, o.label) for o in objectives if o.column not in dict(shown)]


def _comparison(report: ReportInput, labels: dict[str, str]) -> list[Block]:
    comparison = report.comparison
    if comparison is None or comparison.table.empty:
        return []
    ref = comparison.reference
    latencies = _objective_columns(report)
    repeats = bool((comparison.table["repeats"].fillna(1) > 1).any())
    headers = [_unit(report.summary), "target", "req/s", "in tok/s", "out tok/s", "total tok/s"]
    headers += ["out tok/s ×ref"] if ref else []
    for _, label in latencies:
        headers += [label] + (["×ref"] if ref else [])
    headers += ["E2E p95", "errors", "goodput/s", "valid"]
    headers += ["repeats (spread)"] if repeats else []
    mixed = _unit(report.summary) == "load"  # a sweep: users, then req/s; each cell says
    rows = []
    for r in comparison.table.to_dict("records"):
        load = _num(r["load"], 0 if float(r["load"]).is_integer() else 1)
        if mixed:
            load = load_unit(str(r["mode"]), float(r["load"]))
        row = [load, labels[r["target"]]]
        row += [_num(r["req_per_s"]), _num(r["input_tok_per_s"]), _num(r["output_tok_per_s"])]
        row += [_num(r["total_tok_per_s"])]
        row += [_ratio(r["output_tok_per_s_ratio"])] if ref else []
        for column, _ in latencies:
            row += [_num(r.get(column))] + ([_ratio(r.get(ratio_column(column)))] if ref else [])
        row += [_num(r["e2e_p95_ms"]), f"{100 * float(r['error_rate']):.1f}%"]
        row += [_num(r["goodput_req_per_s"]), "yes" if bool(r["valid"]) else "NO"]
        if repeats:
            spread = _num(r.get("repeat_spread_pct"))
            counts = f"{int(r['valid_repeats'])}/{int(r['repeats'])}"
            row.append(counts if spread == "n/a" else f"{counts} (±{float(spread) / 2:.1f}%)")
        rows.append(row)
    note = (
        f"Ratios: target ÷ reference **{ref}** ({comparison.reference_why}) at the same load. "
        if ref
        else "No reference target: give one `quant: fp16` or set `analysis.reference`. "
    )
    note += (
        "Every figure of a stage comes from the requests it scheduled after its warm-up; "
        "req/s and tok/s are their completed requests (tokens) over the measured window. "
        "Latencies in ms from raw client records; n/a = too few samples."
    )
    if repeats:
        note += (
            " With repeats: the median over valid repeats; spread = half the range of TTFT "
            "p50 across them."
        )
    return [Heading("Comparison at each load"), Table(headers, rows), Paragraph(note)]


def _pair_cell(ratio: float, low: float, high: float, verdict: str) -> str:
    text = f"{ratio:.2f}× ({low:.2f}–{high:.2f})"
    return f"≈ {text}" if verdict == "within noise" else f"**{text}**"


def _pairs(report: ReportInput, labels: dict[str, str]) -> list[Block]:
    """Every pair at equal load: per load, one row per pair (A ÷ B, the upper half of the
    ratio matrix; the lower half is its reciprocal) and one column per compared figure."""
    comparison = report.comparison
    pairs = comparison.pairs if comparison is not None else None
    if pairs is None or pairs.empty:
        return []
    margin = pairs["band"].min()
    blocks: list[Block] = [
        Heading("Every pair at equal load"),
        Paragraph(
            "Row target ÷ column target, from the per-request records of the valid stages at "
            "that load (repeats pooled): below 1 the first target is faster. In brackets the "
            "95% bootstrap interval (SciPy, each side resampled on its own). **Bold**: the "
            f"whole interval lies beyond ±{100 * margin:.0f}% of a tie, a real difference; ≈: "
            "within noise (the tie band is `analysis.tie_margin`, or the spread between a "
            "target's own repeats when wider). Medians are steadier than the SLO's percentile."
        ),
    ]
    modes = report.summary["mode"].dropna().unique()
    mode = str(modes[0]) if len(modes) == 1 else ""
    metrics = list(dict.fromkeys(pairs["metric"]))
    for load, cells in pairs.groupby("load", sort=True):
        rows = []
        for (a, b), by_metric in cells.groupby(["a", "b"], sort=False):
            found = {r.metric: r for r in by_metric.itertuples()}
            row = [f"{labels.get(a, a)} ÷ {labels.get(b, b)}"]
            for metric in metrics:
                r = found.get(metric)
                row.append("n/a" if r is None else _pair_cell(r.ratio, r.low, r.high, r.verdict))
            rows.append(row)
        blocks.append(Paragraph(f"At {load_unit(mode, float(load))}:"))
        blocks.append(Table(["pair", *metrics], rows))
    return blocks


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
        # a sweep (users, then req/s): say which kind of load the limit is
        load = cap.text("load", load_unit(cap.mode) if unit == "load" else "")
        row = [
            labels[target],
            load,
            cap.text("req_per_s"),
            cap.text("output_tok_per_s"),
        ]
        if comparison.reference:
            row.append(_ratio(comparison.capacity_ratio(target)))
        rows.append([*row, cap.limited_by])
    slo = slo_text(report.slo) if report.slo is not None else "the config's SLO"
    blocks: list[Block] = [
        Heading("Highest load within the SLO"),
        Paragraph(
            f"SLO: {slo}, on valid stages only: an invalid stage is unknown, never a failure. "
            "≈ = interpolated linearly between the last stage that met the SLO and the first "
            "that did not; ± = a search's answer and its half-width (see SLO search); "
            "≥ = every measured load met it; none = the lowest measured load "
            "already failed; not measured = no valid stage."
        ),
        Table(headers, rows),
    ]
    skipped = [
        f"{labels[target]} at {reason}"
        for target in comparison.ranking
        for reason in comparison.capacity[target].skipped
    ]
    if skipped:
        blocks += [Paragraph("Stages left out as unknown:"), Bullets(skipped)]
    return blocks


def _peak(inputs: PlanInputs) -> str:
    if not inputs.peak_rps:
        return "peak: not given (no GPU count)"
    if inputs.growth:
        return (
            f"peak: {inputs.peak_rps:.3g} req/s, the replayed trace's traffic grown "
            f"{inputs.growth:g}× (its own mean rate, before speedup and sampling, × "
            f"{inputs.growth:g}; each stage replayed its bursts too)"
        )
    return f"peak: {inputs.peak_rps:g} req/s"


def plan_blocks(
    plan: Plan, labels: dict[str, str], title: str = "Capacity plan", level: int = 2
) -> list[Block]:
    """The capacity plan as a section of the report, or (level 1) as plan.md."""
    inputs = plan.inputs
    facts = [
        f"SLO: {slo_text(inputs.objectives)} (on valid stages)"
        + (" — from the run's config" if inputs.source == "config" else ""),
        _peak(inputs),
        f"headroom: {inputs.headroom:.0%} of each replica's SLO-limited rate kept spare",
        f"GPU-hour cost: ${inputs.gpu_hour_cost:g}"
        if inputs.gpu_hour_cost
        else "GPU-hour cost: not given (output tokens per GPU-hour shown instead)",
    ]
    if plan.accuracy_bar is not None:
        facts.append(
            f"accuracy bar: perplexity at most +{plan.accuracy_bar:.2%} over FP16 (the whole "
            "95% interval); targets that miss it, are uncertain or not measurable are excluded"
        )
    cost_header = "$ per M out tok" if inputs.gpu_hour_cost else "M out tok per GPU-hour"
    headers = ["target", "max req/s per GPU", "GPUs for peak", "out tok/s at max", cost_header]
    headers.append("where the SLO breaks")
    rows = []
    for t in plan.targets:
        bound = "≤ " if t.lower_bound else ""
        gpus = f"{bound}{t.replicas}" if t.replicas is not None else "n/a"
        if inputs.gpu_hour_cost:
            cost = _num(t.cost_per_million_tokens, 3)
        else:
            per_hour = t.output_tok_per_s * 3600 / 1e6 if t.output_tok_per_s else None
            cost = _num(per_hour, 2)
        excluded = " (excluded: accuracy bar)" if t.target in plan.excluded else ""
        rows.append(
            [
                labels.get(t.target, t.target)
                + (" ← cheapest" if t.target == plan.cheapest else excluded),
                t.capacity.text("req_per_s"),
                gpus,
                t.capacity.text("output_tok_per_s"),
                cost,
                t.capacity.limited_by,
            ]
        )
    among = " among the targets that meet the accuracy bar" if plan.excluded else ""
    verdict = (
        f"Cheapest per output token{among}: {labels.get(plan.cheapest, plan.cheapest)}."
        if plan.cheapest
        else "No target meets both the SLO and the accuracy bar, so none can be planned."
        if plan.excluded
        else "No target meets the SLO, so none can be planned."
    )
    notes = (
        "GPUs = ceil(peak ÷ (max req/s × (1 − headroom))); cost per million output tokens = "
        "GPU-hour cost ÷ (output tok/s at max × 3600) × 10⁶. One replica per GPU, every target "
        "on the same GPU type; ≥ / ≤ mark targets that met the SLO at every tested load (the "
        "real rate is higher, the GPU count an upper bound)."
    )
    skipped = [
        f"{labels.get(t.target, t.target)} at {reason}"
        for t in plan.targets
        for reason in t.capacity.skipped
    ]
    blocks: list[Block] = [Heading(title, level), Bullets(facts), Table(headers, rows)]
    if skipped:
        blocks += [Paragraph("Stages left out as unknown (not as failures):"), Bullets(skipped)]
    if plan.excluded:
        reasons = [f"{labels.get(name, name)}: {why}" for name, why in plan.excluded.items()]
        blocks += [Paragraph("Excluded by the accuracy bar:"), Bullets(reasons)]
    return [*blocks, Paragraph(verdict), Paragraph(notes), *energy_plan_blocks(plan, labels)]


def _stats(summary: pd.DataFrame, labels: dict[str, str], percentiles: list[float]) -> list[Block]:
    words = [f"p{percentile_word(p)}" for p in percentiles]
    intervals = [w for w in ("p95", "p99") if w in words]
    headers = ["target", _unit(summary), "metric", "scope", "n", "mean", *words]
    headers += [f"{w} 95% CI" for w in intervals]
    rows = []
    for r in summary.to_dict("records"):
        for scope, metrics in STAT_METRICS.items():
            for metric in metrics:
                if stat_column(metric, scope, "n") not in r:
                    continue
                row = [labels[r["target"]], _num(r["load"], 0), metric.upper()]
                row.append("all" if scope else "ok")
                row.append(str(int(r[stat_column(metric, scope, "n")] or 0)))
                row.append(_num(r.get(stat_column(metric, scope, "mean"))))
                row += [_num(r.get(stat_column(metric, scope, w))) for w in words]
                for w in intervals:
                    lo, hi = (r.get(stat_column(metric, scope, f"{w}_{b}")) for b in ("lo", "hi"))
                    row.append("n/a" if _num(lo) == "n/a" else f"{_num(lo)}–{_num(hi)}")
                rows.append(row)
    return [
        Heading("Per-stage statistics"),
        Paragraph(
            "Milliseconds, over each stage's own requests (scheduled after its warm-up). "
            "`ok`: successful requests only; `all`: every scheduled request, a failure "
            "counted as its timeout (so failing fast cannot look fast). CI: "
            "distribution-free order-statistic 95% interval; n/a below the samples a "
            "percentile needs (59 for p95, 299 for p99). ITL pools every token gap of the "
            "stage. Percentiles shown: `analysis.percentiles`."
        ),
        Table(headers, rows),
    ]


def _errors(report: ReportInput, labels: dict[str, str]) -> list[Block]:
    """Failures per target × stage by outcome and HTTP status, with an example message."""
    errors = report.errors
    blocks: list[Block] = [Heading("Errors")]
    if errors is None or errors.empty:
        return [*blocks, Paragraph("Every measured request ended `ok`.")]
    stages = report.summary.set_index(["target", "stage"])
    rows = []
    for r in errors[BREAKDOWN_COLUMNS].itertuples():
        key = (r.target, r.stage)
        load = stages.loc[key, "load"] if key in stages.index else None
        scheduled = stages.loc[key, "requests"] if key in stages.index else None
        share = f"{100 * r.count / scheduled:.1f}%" if scheduled else "n/a"
        status = "—" if pd.isna(r.http_status) else str(int(r.http_status))
        rows.append(
            [
                labels.get(r.target, r.target),
                str(r.stage),
                _num(load, 0),
                str(r.outcome),
                status,
                f"{int(r.count):,}",
                share,
                f"`{r.example}`" if r.example else "",
            ]
        )
    headers = ["target", "stage", _unit(report.summary), "outcome", "HTTP", "count", "share"]
    note = (
        "Failed requests of each stage's measured window by outcome (MEASUREMENT.md) and "
        "HTTP status; share of the stage's scheduled requests; the example is the first "
        "message of its kind, on one line (API keys are redacted when recorded)."
    )
    return [*blocks, Paragraph(note), Table([*headers, "example"], rows)]


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


def _server(
    rows: pd.DataFrame | None, summary: pd.DataFrame, labels: dict[str, str]
) -> list[Block]:
    """The server's own figures beside the client's (server quantiles bucket-interpolated).

    The client TTFT p95 is the stage's own figure (the same as every other table); the
    count and mean are reconciled over the requests the server itself counts."""
    if rows is None or rows.empty:
        return []
    client_p95 = {(str(r.target), int(r.stage)): r.ttft_p95_ms for r in summary.itertuples()}
    headers = [
        "target", "stage", "client ok (ended in window)", "server finished",
        "client TTFT mean (same requests)", "server TTFT mean", "client TTFT p95",
        "server TTFT p95 (buckets)", "preempted", "prefix-cache hits", "restart",
    ]  # fmt: skip
    table = [
        [
            labels.get(str(r.target), str(r.target)),
            str(r.stage),
            _num(r.client_ok, 0),
            _num(r.server_requests_finished, 0),
            _num(r.client_ttft_mean_ms),
            _num(r.server_ttft_mean_ms),
            _num(client_p95.get((str(r.target), int(r.stage)))),
            _num(r.server_ttft_p95_ms),
            _num(r.server_preemptions, 0),
            _share(r.server_prefix_cache_hit_rate),
            "YES" if bool(r.restarted) else "no",
        ]
        for r in rows.itertuples()
    ]
    note = (
        "From each target's /metrics over the stage's measured window (aligned to the "
        "scrapes). To reconcile counts and means, the client side counts what the server "
        "counts: requests that *ended* ok in that window, warm-up ones included; the client "
        "TTFT p95 is the stage's own, as in every other table. Server quantiles are "
        "interpolated within histogram buckets; 'preempted': running requests the server "
        "evicted because its KV cache was full (vLLM), each one a pause in its stream; "
        "'prefix-cache hits': the share of prompt tokens the server found already computed "
        "in its prefix cache (vLLM's prefix_cache_hits ÷ prefix_cache_queries)."
    )
    return [Heading("Server-side figures"), Paragraph(note), Table(headers, table)]


def report_blocks(report: ReportInput) -> list[Block]:
    """The whole report, in reading order."""
    labels = target_labels(report.summary)
    blocks: list[Block] = [Heading(report.title, 1), Bullets(report.headline)]
    if report.setup:
        blocks += [Heading("What was measured"), Bullets([f"{k}: {v}" for k, v in report.setup])]
    blocks += report.trace
    blocks += report.base_comparison
    if report.summary.empty:
        return [*blocks, Heading("Run"), Bullets([f"{k}: {v}" for k, v in report.meta])]
    blocks += _comparison(report, labels)
    blocks += _pairs(report, labels)
    blocks += _capacity(report, labels)
    blocks += search_blocks(report.searches, labels)
    if report.quality is not None:
        blocks += speed_quality_blocks(report.quality, labels, report.quality_chart)
    if report.plan is not None:
        blocks += plan_blocks(report.plan, labels)
    blocks += gpu_blocks(report.summary, report.comparison, labels)
    if report.plots:
        blocks.append(Heading("Charts"))
        blocks += [Image(alt, path) for alt, path in report.plots.items()]
    blocks += _errors(report, labels)
    blocks += _stats(report.summary, labels, report.percentiles)
    blocks += report.turns
    blocks += _validity(report.summary, labels)
    blocks += _server(report.server, report.summary, labels)
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
