"""From a run directory to summary.csv, requests.parquet, annotated stages, plan and reports.

The plan: `quantbench plan` passes its inputs, which are kept in plan.json (with plan.md); a
later `quantbench report` reuses them. With no plan asked for, the report still plans with the
config's SLO and no peak (rate per GPU and tokens per GPU-hour, no GPU count or price).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from pydantic import ValidationError

from analysis.compare import Comparison, compare_targets
from analysis.config import AnalysisConfig, SloConfig
from analysis.headline import headline
from analysis.plan import Plan, PlanInputs, make_plan
from analysis.plots import write_plots
from analysis.report import Flag, ReportInput, render_html, render_markdown, render_plan_markdown
from analysis.rundir import (
    PLAN_JSON,
    PLAN_MD,
    RunDirError,
    load_generator,
    load_plan,
    load_requests,
    load_run_meta,
    load_stages,
    parquet_is_current,
    write_parquet,
    write_stages,
    write_text_atomic,
)
from analysis.server_view import server_view
from analysis.summary import FailureCost, TargetInfo, summarize
from loadtest.run_meta import RunMeta, TargetMeta

__all__ = ["AnalysisResult", "analyze_run"]


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


def _config(meta: RunMeta) -> tuple[SloConfig, AnalysisConfig, FailureCost]:
    config = meta.config
    try:
        slo = SloConfig.model_validate(config.get("slo") or {})
        limits = AnalysisConfig.model_validate(config.get("analysis") or {})
        timeouts = meta.timeouts()
    except ValidationError as exc:
        raise RunDirError(
            f"run.json: config.slo, config.analysis or config.timeouts unreadable ({exc})"
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


def _mark_restarts(summary: pd.DataFrame, restarts: dict[tuple[str, int], str]) -> None:
    """A stage in which the server restarted is invalid (MEASUREMENT.md), never averaged in."""
    for index, row in summary.iterrows():
        reason = restarts.get((str(row["target"]), int(row["stage"])))
        if reason is None:
            continue
        previous = str(row["invalid_reason"] or "")
        summary.at[index, "valid"] = False
        text = f"server restarted ({reason})"
        summary.at[index, "invalid_reason"] = f"{previous}; {text}" if previous else text


def analyze_run(run_dir: Path, plan_inputs: PlanInputs | None = None) -> AnalysisResult:
    """Summarise, compare, plan and report; `plan_inputs` (from `quantbench plan`) are kept."""
    meta = load_run_meta(run_dir)
    slo, limits, cost = _config(meta)
    requests = load_requests(run_dir)
    stages = load_stages(run_dir)
    summary = summarize(
        requests, stages, _targets(meta), slo, limits, cost, load_generator(run_dir)
    )
    server = server_view(run_dir, meta, stages, requests)
    _mark_restarts(summary, server.restarts())
    by_key = {(row.target, row.stage): row for row in summary.itertuples()}
    for stage in stages:
        row = by_key.get((stage.target, stage.stage))
        if row is not None:
            stage.valid = bool(row.valid)
            stage.invalid_reason = str(row.invalid_reason) or None
    write_stages(run_dir, stages)
    if not parquet_is_current(run_dir):
        write_parquet(run_dir, requests)
    records = len(requests)
    del requests  # the largest object by far; the rest works on the summary

    summary_csv = run_dir / "summary.csv"
    summary.to_csv(summary_csv, index=False, float_format="%.3f")
    comparison = compare_targets(summary, slo, limits.reference)
    asked = plan_inputs or _saved_plan_inputs(run_dir)
    asked = asked.resolved(slo) if asked is not None else None
    plan = make_plan(summary, asked or PlanInputs(slo=slo, source="config"))
    name = meta.name or run_dir.name
    simulated = bool(summary["simulated"].any()) if len(summary) else False
    tag = " (simulated)" if simulated else ""
    plan_md = None
    if asked is not None:
        write_text_atomic(run_dir / PLAN_JSON, json.dumps(plan.to_json(), indent=2) + "\n")
        plan_md = run_dir / PLAN_MD
        write_text_atomic(
            plan_md, render_plan_markdown(plan, summary, f"Capacity plan — {name}{tag}")
        )

    plots = write_plots(summary, run_dir / "plots", slo, comparison.capacity)
    lines = headline(summary, slo, comparison, plan)
    report = ReportInput(
        f"quantbench report — {name}{tag}",
        lines,
        summary,
        plots,
        _meta_lines(meta, records, slo),
        comparison,
        plan,
        [Flag(*flag) for flag in server.flags()]
        + ([Flag("all", None, server.note)] if server.note else []),
        slo,
        server.reconciliation,
    )
    report_md = run_dir / "report.md"
    write_text_atomic(report_md, render_markdown(report))
    report_html = run_dir / "report.html"
    write_text_atomic(report_html, render_html(report))
    return AnalysisResult(
        summary, summary_csv, report_md, report_html, comparison, plan, plan_md, lines
    )
