"""From a run directory to its derived files, in three steps: `load_run` reads everything the
run wrote (and writes nothing), `analyze` computes every figure and verdict (pure), and
`write_outputs` writes the derived files: summary.csv, requests.parquet, server_stages.csv,
result.json, plots, report.md/html and, when a plan was asked for, plan.json/plan.md.

The files the run wrote (run.json, requests.jsonl, stages.jsonl, the scrapes…) are never
rewritten: stage validity lives in summary.csv and result.json, decided once with every cause
known (server restarts included) before any figure is summarised.

The plan: `quantbench plan` passes its inputs, which are kept in plan.json (with plan.md); a
later `quantbench report` reuses them. With no plan asked for, the report still plans with the
config's SLO and no peak (rate per GPU and tokens per GPU-hour, no GPU count or price).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import ValidationError

from analysis.capacity import load_unit
from analysis.compare import Comparison, compare_targets
from analysis.config import AnalysisConfig, SloConfig
from analysis.distributions import latency_cdfs
from analysis.errors import error_breakdown
from analysis.gpu_plots import write_gpu_plot
from analysis.gpu_stages import Telemetry, add_telemetry_columns, load_telemetry
from analysis.headline import headline, target_labels
from analysis.pairwise import compare_pairs
from analysis.plan import Plan, PlanInputs, exclude, make_plan
from analysis.plots import write_plots
from analysis.regression_report import ComparisonDoc, comparison_blocks, load_comparison
from analysis.repeats import by_load
from analysis.report import Flag, ReportInput, render_html, render_markdown, render_plan_markdown
from analysis.result_file import RESULT_FILE, result_document
from analysis.rundir import (
    PARQUET_FILE,
    PLAN_JSON,
    PLAN_MD,
    RunDirError,
    load_generator,
    load_plan,
    load_run_meta,
    load_stages,
    parquet_is_current,
    read_requests,
    write_parquet,
    write_text_atomic,
)
from analysis.search_view import Search, judged, load_searches
from analysis.server_view import SERVER_STAGES_FILE, ServerView, load_server_figures, server_view
from analysis.speed_quality import (
    SpeedQuality,
    decision_line,
    load_quality,
    resolve_bar,
    speed_quality,
)
from analysis.speed_quality_plot import write_speed_quality_chart
from analysis.summary import (
    FailureCost,
    StageRequests,
    TargetInfo,
    report_percentiles,
    summarize,
    with_integer_counts,
)
from analysis.timeline import Timeline, load_server_gauges, timeline
from analysis.traffic import TURN_COLUMNS, TURNS_FILE, trace_blocks, turn_blocks, turn_latency
from loadtest.records import REQUESTS_FILE, StageRecord
from loadtest.run_meta import RunMeta, TargetMeta
from loadtest.traces.stats import TraceSummary, read_trace_summary

__all__ = [
    "Analysis",
    "AnalysisResult",
    "Run",
    "StageFigures",
    "analyze",
    "analyze_run",
    "load_run",
    "stage_figures",
    "unfinished_notes",
    "write_outputs",
]


@dataclass(frozen=True)
class Run:
    """Everything a run directory holds, read once: the analysis's only input."""

    run_dir: Path
    meta: RunMeta
    slo: SloConfig
    limits: AnalysisConfig
    cost: FailureCost
    requests: pd.DataFrame
    stages: list[StageRecord]
    generator: pd.DataFrame
    server_figures: pd.DataFrame
    server_note: str | None
    gauges: pd.DataFrame
    saved_plan: PlanInputs | None
    problems: list[str] = field(default_factory=list)  # damaged lines skipped, one per file
    base_comparison: ComparisonDoc | None = None  # left by `quantbench compare`
    quality: dict[str, Any] | None = None  # quality.json, when the run has one
    telemetry: Telemetry = field(default_factory=Telemetry)  # GPU and container samples
    trace: TraceSummary | None = None  # trace.json: the replayed trace, when one was
    searches: dict[str, Search] = field(default_factory=dict)  # `load.mode: search` answers


@dataclass(frozen=True)
class Analysis:
    """Every figure and verdict of a run, computed; `report` lacks only its chart paths."""

    run: Run
    summary: pd.DataFrame
    breakdown: pd.DataFrame
    comparison: Comparison
    plan: Plan
    plan_asked: bool
    headline: list[str]
    server: ServerView
    cdfs: pd.DataFrame
    timeline: Timeline
    report: ReportInput
    result: dict[str, Any]
    name: str
    speed_quality: SpeedQuality | None = None
    turns: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=TURN_COLUMNS))


@dataclass(frozen=True)
class AnalysisResult:
    summary: pd.DataFrame
    summary_csv: Path
    report_md: Path
    report_html: Path
    comparison: Comparison | None = None
    plan: Plan | None = None
    plan_md: Path | None = None  # only when a plan was asked for (now or by an earlier `plan`)
    headline: list[str] = field(default_factory=list)
    result_json: Path | None = None
    warnings: list[str] = field(default_factory=list)  # damaged input lines, for stderr
    breakdown: pd.DataFrame | None = None  # failures by target × stage × outcome × status


def _targets(meta: RunMeta) -> dict[str, TargetInfo]:
    return {t.name: TargetInfo(t.name, t.stack, t.quant, t.simulated) for t in meta.targets}


def _where(target: TargetMeta) -> str:
    if not target.simulated:
        return str(target.url or "?")
    sim = target.sim or {}
    faults = sim.get("faults") or {}
    text = f"*simulated* ({sim.get('stack', '?')} {sim.get('quant', '?')} on {sim.get('gpu', '?')}"
    if faults.get("slowdown", 1.0) != 1.0:
        text += f", slowdown {faults['slowdown']:g}×"
    return text + ")"


def _meta_lines(meta: RunMeta, records: int, slo: SloConfig) -> list[tuple[str, str]]:
    load = meta.config.get("load") or {}
    lines = [
        ("run", meta.run_id or "?"),
        ("started", str(meta.started_at or "?")),
        ("ended", str(meta.ended_at or "?")),
        ("quantbench", meta.versions.get("quantbench", "?")),
        ("host", str(meta.host.get("hostname", "?"))),
        ("records", str(records)),
        ("SLO", slo.model_dump_json(exclude_none=True)),
    ]
    if meta.resumed_at:
        lines.append(("resumed", ", ".join(meta.resumed_at)))
    if load:
        lines.append(("load", f"{load.get('mode', '?')} stages {load.get('stages', '?')}"))
    for target in meta.targets:
        lines.append((f"target {target.name}", f"{_where(target)}; server {target.server_info}"))
    return lines


def _length(spec: Any) -> str:
    """A token-length distribution in words: `256`, `normal mean 128 ± 32 (16–256)`."""
    if not isinstance(spec, dict):
        return str(spec) if spec is not None else "?"
    mean, dist = spec.get("mean"), spec.get("dist", "fixed")
    if dist == "fixed":
        return f"{mean:g}" if isinstance(mean, int | float) else str(mean)
    bounds = f" ({spec.get('min', 1)}–{spec['max']})" if spec.get("max") else ""
    return f"{dist} mean {mean:g} ± {spec.get('std', 0):g}{bounds}"


def _setup_lines(meta: RunMeta, requests: pd.DataFrame, slo: SloConfig) -> list[tuple[str, str]]:
    """What was measured, for the report's header: model, lengths, dataset, GPU, load, SLO."""
    workload = meta.config.get("workload") or {}
    load = meta.config.get("load") or {}
    models, gpus = [], []
    for t in meta.targets:
        models.append(f"{t.name}: {t.model or 'not recorded'}")
        gpu = (t.sim or {}).get("gpu")
        gpus.append(f"{t.name}: {gpu} (simulated)" if gpu else f"{t.name}: not recorded")
    measured = ""
    ok = (requests["outcome"].astype(str) == "ok").to_numpy() if len(requests) else None
    if ok is not None and ok.any():  # column by column: never a copy of the whole frame
        prompt = pd.to_numeric(requests["prompt_tokens"], errors="coerce")[ok].mean()
        output = pd.to_numeric(requests["output_tokens"], errors="coerce")[ok].mean()
        measured = f" (measured on ok requests: mean {prompt:.1f} in, {output:.1f} out)"
    dataset = workload.get("dataset")
    lines = [
        ("model", "; ".join(models) or "?"),
        ("GPU", "; ".join(gpus) or "?"),
        (
            "prompt / output tokens",
            f"{_length(workload.get('prompt_tokens'))} / "
            f"{_length(workload.get('output_tokens'))}{measured}",
        ),
        ("dataset", str(dataset) if dataset else "synthetic prompts (no dataset file)"),
        ("endpoint", str(workload.get("endpoint", "?"))),
    ]
    if load:
        stages = ", ".join(f"{float(x):g}" for x in load.get("stages") or [])
        lines.append(
            (
                "load",
                f"{load.get('mode', '?')}: {stages} ({load_unit(str(load.get('mode', '')))}), "
                f"warm-up {load.get('warmup', '?')} s + at least "
                f"{load.get('stage_duration', '?')} s measured per stage, longer until it had "
                f"its samples (at most {_stage_cap(meta)} s)" + _repeats(meta),
            )
        )
    lines.append(("SLO", ", ".join(f"{o.label} ≤ {o.limit_ms:g} ms" for o in slo.objectives())))
    return lines


def _stage_cap(meta: RunMeta) -> str:
    try:
        return f"{meta.load().stage_cap_s:g}"
    except ValueError:  # a by-hand run.json whose load section this version cannot read
        return "?"


def _repeats(meta: RunMeta) -> str:
    repeats = meta.config.get("repeats") or 1
    return f", each target's stages run {repeats} times" if repeats != 1 else ""


def _config(meta: RunMeta) -> tuple[SloConfig, AnalysisConfig, FailureCost]:
    config = meta.config
    try:
        slo = SloConfig.model_validate(config.get("slo") or {})
        limits = AnalysisConfig.model_validate(config.get("analysis") or {})
        timeouts = meta.timeouts()
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise RunDirError(
            "run.json: config.slo, config.analysis or config.timeouts unreadable "
            f"({where}: {first['msg']})"
        ) from exc
    cost = FailureCost(ttft_ms=1000.0 * timeouts.ttft, e2e_ms=1000.0 * timeouts.total)
    return slo, limits, cost


def _saved_plan_inputs(run_dir: Path) -> PlanInputs | None:
    saved = load_plan(run_dir)
    if saved is None:
        return None
    try:
        return PlanInputs.model_validate(saved.get("inputs"))
    except ValidationError as exc:
        raise RunDirError(
            f"{run_dir / PLAN_JSON}: inputs unreadable; delete it or rerun quantbench plan"
        ) from exc


def unfinished_notes(run_dir: Path, meta: RunMeta) -> list[str]:
    """A `quantbench run` that did not reach its end: its figures are those of the stages it
    finished, and a target it never reached is missing, not worse; say so, and how to finish."""
    resume = f"`quantbench run --resume {run_dir}` finishes it"
    if meta.source != "quantbench run":
        return []
    if meta.interrupted:
        return [f"This run was interrupted ({meta.interrupted}) before it finished: {resume}."]
    if meta.ended_at is None:
        return [
            "run.json has no end time: this run is still going, or was killed (kill -9, a "
            f"crash) before it finished; {resume}."
        ]
    return []


def _records_missing(run_dir: Path, stages: list[StageRecord]) -> list[str]:
    """Stages without their records: a deleted or lost requests.jsonl reads as empty, and its
    stages as invalid with 0 samples; say which file is missing instead."""
    if not stages or (run_dir / REQUESTS_FILE).exists() or (run_dir / PARQUET_FILE).exists():
        return []
    return [
        f"{run_dir / REQUESTS_FILE}: missing, so its {len(stages)} stages have no request "
        "records (restore the file, or rerun them)"
    ]


def load_run(run_dir: Path, columns: list[str] | None = None) -> Run:
    """Read a run directory (no file is written). Raises RunDirError with one line.
    `columns`: only these request fields (the others null), for callers that need few."""
    meta = load_run_meta(run_dir)
    slo, limits, cost = _config(meta)
    requests, problems = read_requests(run_dir, columns)
    stages = load_stages(run_dir)
    figures, note = load_server_figures(run_dir, meta, stages)
    telemetry = load_telemetry(run_dir, meta)
    stacks = {t.name: t.stack for t in meta.targets}
    return Run(
        run_dir=run_dir,
        meta=meta,
        slo=slo,
        limits=limits,
        cost=cost,
        requests=requests,
        stages=stages,
        generator=load_generator(run_dir),
        server_figures=figures,
        server_note=note,
        gauges=load_server_gauges(run_dir, stacks),
        saved_plan=_saved_plan_inputs(run_dir),
        problems=unfinished_notes(run_dir, meta)
        + _records_missing(run_dir, stages)
        + problems
        + telemetry.problems,
        quality=load_quality(run_dir),
        base_comparison=load_comparison(run_dir),
        telemetry=telemetry,
        trace=read_trace_summary(run_dir),
        searches=load_searches(run_dir, meta.config),
    )


def _speed_quality(
    run: Run, plan: Plan, asked: PlanInputs | None, flag: float | None
) -> tuple[SpeedQuality | None, Plan]:
    """The speed-quality view (when the run has quality data, a `quality:` section or a bar)
    and the plan without the targets the accuracy bar rules out."""
    bar, source = resolve_bar(flag, asked, run.meta.config)
    if run.quality is None and bar is None and not run.meta.config.get("quality"):
        return None, plan
    view = speed_quality(run.quality, plan, bar, source)
    return view, plan if bar is None else exclude(plan, bar, view.excluded())


@dataclass(frozen=True)
class StageFigures:
    """A run's per-stage figures and the records they rest on (`analyze` and `compare`)."""

    summary: pd.DataFrame
    records: StageRequests
    server: ServerView
    breakdown: pd.DataFrame


def stage_figures(run: Run, percentiles: list[float] | None = None) -> StageFigures:
    """summary.csv's rows of `run` (validity decided with every cause, server restarts
    included), with the grouped records behind them."""
    percentiles = percentiles or report_percentiles(run.limits, run.slo)
    server = server_view(run.server_figures, run.server_note, run.stages, run.requests)
    breakdown = error_breakdown(run.requests)
    records = StageRequests(run.requests, run.slo)
    summary = summarize(
        run.requests,
        run.stages,
        _targets(run.meta),
        run.slo,
        run.limits,
        run.cost,
        run.generator,
        restarts=server.restarts(),
        breakdown=breakdown,
        percentiles=percentiles,
        records=records,
        containers=run.telemetry.container_changes(run.stages),
    )
    summary = add_telemetry_columns(summary, run.telemetry, run.stages)
    return StageFigures(summary, records, server, breakdown)


def analyze(
    run: Run, plan_inputs: PlanInputs | None = None, max_ppl_increase: float | None = None
) -> Analysis:
    """Every figure and verdict of `run` (pure). `plan_inputs` (from `quantbench plan`)
    replace the saved ones; without either, the plan uses the config's SLO.
    `max_ppl_increase` (`report --max-ppl-increase`) overrides the plan's and the config's
    accuracy bar for this analysis."""
    asked = plan_inputs or run.saved_plan
    kwh_cost = run.limits.kwh_cost
    asked = asked.resolved(run.slo, kwh_cost) if asked is not None else None
    percentiles = report_percentiles(run.limits, run.slo, asked.slo if asked else None)
    figures = stage_figures(run, percentiles)
    server, breakdown = figures.server, figures.breakdown
    records, summary = figures.records, figures.summary
    pairs = compare_pairs(records, summary, run.slo, run.limits)
    searches = judged(run.searches, summary)
    comparison = compare_targets(summary, run.slo, run.limits.reference, pairs, searches)
    inputs = asked or PlanInputs(slo=run.slo, source="config", kwh_cost=kwh_cost)
    same_slo = inputs.objectives == run.slo  # a search answers for the SLO it searched with
    plan = make_plan(summary, inputs, searches if same_slo else None)
    quality, plan = _speed_quality(run, plan, asked, max_ppl_increase)
    name = run.meta.name or run.run_dir.name
    simulated = bool(summary["simulated"].any()) if len(summary) else False
    tag = " (simulated)" if simulated else ""
    lines = headline(summary, run.slo, comparison, plan, notes=run.problems)
    accuracy = decision_line(quality) if quality is not None else None
    if accuracy is not None:
        lines.insert(1, accuracy)
    turns = turn_latency(run.requests)
    labels = target_labels(summary)
    report = ReportInput(
        title=f"quantbench report — {name}{tag}",
        headline=lines,
        summary=summary,
        meta=_meta_lines(run.meta, len(run.requests), run.slo),
        setup=_setup_lines(run.meta, run.requests, run.slo),
        comparison=comparison,
        plan=plan,
        flags=[Flag(*flag) for flag in server.flags()]
        + ([Flag("all", None, server.note)] if server.note else []),
        slo=run.slo,
        server=server.reconciliation,
        errors=breakdown,
        percentiles=[p for p in percentiles if p in run.limits.percentiles] or percentiles,
        quality=quality,
        searches=searches,
        base_comparison=(
            comparison_blocks(run.base_comparison, "Comparison with base run", level=2)
            if run.base_comparison is not None
            else []
        ),
        trace=trace_blocks(run.trace),
        turns=turn_blocks(turns, labels),
    )
    result = result_document(run.meta, summary, comparison, plan, lines, breakdown, percentiles)
    if quality is not None:
        result["quality"] = quality.to_json()
    return Analysis(
        run=run,
        summary=summary,
        breakdown=breakdown,
        comparison=comparison,
        plan=plan,
        plan_asked=asked is not None,
        headline=lines,
        server=server,
        cdfs=latency_cdfs(records, summary),
        timeline=timeline(run.requests, run.stages, run.gauges),
        report=report,
        result=result,
        name=f"{name}{tag}",
        speed_quality=quality,
        turns=turns,
    )


def write_outputs(analysis: Analysis) -> AnalysisResult:
    """Write every derived file of `analysis` into its run directory (each atomically)."""
    run_dir, summary = analysis.run.run_dir, analysis.summary
    if not parquet_is_current(run_dir):
        write_parquet(run_dir, analysis.run.requests)
    summary_csv = run_dir / "summary.csv"
    text = with_integer_counts(summary).to_csv(index=False, float_format="%.3f")
    write_text_atomic(summary_csv, text)
    figures = analysis.server.figures
    if not figures.empty:
        text = figures.to_csv(index=False, float_format="%.4f")
        write_text_atomic(run_dir / SERVER_STAGES_FILE, text)
    if not analysis.turns.empty:
        text = analysis.turns.to_csv(index=False, float_format="%.3f")
        write_text_atomic(run_dir / TURNS_FILE, text)
    result_json = run_dir / RESULT_FILE
    write_text_atomic(result_json, json.dumps(analysis.result, indent=1, default=str) + "\n")
    plan_md = None
    if analysis.plan_asked:
        plan = analysis.plan
        write_text_atomic(run_dir / PLAN_JSON, json.dumps(plan.to_json(), indent=2) + "\n")
        plan_md = run_dir / PLAN_MD
        title = f"Capacity plan — {analysis.name}"
        write_text_atomic(plan_md, render_plan_markdown(plan, summary, title))
    plots = write_plots(
        by_load(summary),
        run_dir / "plots",
        analysis.run.slo,
        analysis.comparison.capacity,
        analysis.cdfs,
        analysis.timeline,
    )
    chart = None
    if analysis.speed_quality is not None:
        chart = write_speed_quality_chart(analysis.speed_quality, run_dir / "plots")
    plots.update(write_gpu_plot(by_load(summary), run_dir / "plots"))
    report = replace(analysis.report, plots=plots, quality_chart=chart)
    report_md = run_dir / "report.md"
    write_text_atomic(report_md, render_markdown(report))
    report_html = run_dir / "report.html"
    write_text_atomic(report_html, render_html(report))
    return AnalysisResult(
        summary,
        summary_csv,
        report_md,
        report_html,
        analysis.comparison,
        analysis.plan,
        plan_md,
        analysis.headline,
        result_json,
        list(analysis.run.problems),
        analysis.breakdown,
    )


def analyze_run(
    run_dir: Path, plan_inputs: PlanInputs | None = None, max_ppl_increase: float | None = None
) -> AnalysisResult:
    """Read, analyse and write a run directory's derived files; `plan_inputs` are kept."""
    return write_outputs(analyze(load_run(run_dir), plan_inputs, max_ppl_increase))
