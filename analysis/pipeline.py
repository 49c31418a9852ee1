"""From a run directory to summary.csv, requests.parquet, annotated stages and the reports."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.config import AnalysisConfig, SloConfig
from analysis.headline import headline
from analysis.plots import write_plots
from analysis.report import ReportInput, render_html, render_markdown
from analysis.rundir import (
    load_generator,
    load_requests,
    load_run_meta,
    load_stages,
    write_parquet,
    write_stages,
)
from analysis.summary import FailureCost, TargetInfo, summarize

__all__ = ["AnalysisResult", "analyze_run"]


@dataclass(frozen=True)
class AnalysisResult:
    summary: pd.DataFrame
    summary_csv: Path
    report_md: Path
    report_html: Path


def _targets(meta: dict[str, Any]) -> dict[str, TargetInfo]:
    return {
        t["name"]: TargetInfo(
            t["name"], t.get("stack", "other"), t.get("quant", ""), t["simulated"]
        )
        for t in meta.get("targets", [])
    }


def _meta_lines(meta: dict[str, Any], requests: pd.DataFrame) -> list[tuple[str, str]]:
    lines = [
        ("run", str(meta.get("run_id", "?"))),
        ("started", str(meta.get("started_at", "?"))),
        ("ended", str(meta.get("ended_at", "?"))),
        ("quantbench", str(meta.get("versions", {}).get("quantbench", "?"))),
        ("host", str(meta.get("host", {}).get("hostname", "?"))),
        ("records", str(len(requests))),
    ]
    for target in meta.get("targets", []):
        where = "simulator" if target.get("simulated") else target.get("url", "?")
        server = target.get("server_info") or {}
        lines.append((f"target {target['name']}", f"{where}; server {server}"))
    return lines


def analyze_run(run_dir: Path) -> AnalysisResult:
    meta = load_run_meta(run_dir)
    config = meta.get("config", {})
    slo = SloConfig.model_validate(config.get("slo") or {})
    limits = AnalysisConfig.model_validate(config.get("analysis") or {})
    requests = load_requests(run_dir)
    stages = load_stages(run_dir)
    timeouts = config.get("timeouts") or {}
    cost = FailureCost(
        ttft_ms=1000.0 * float(timeouts.get("ttft", 60.0)),
        e2e_ms=1000.0 * float(timeouts.get("total", 300.0)),
    )
    generator = load_generator(run_dir)
    summary = summarize(requests, stages, _targets(meta), slo, limits, cost, generator)

    by_key = {(row.target, row.stage): row for row in summary.itertuples()}
    for stage in stages:
        row = by_key.get((stage.target, stage.stage))
        if row is not None:
            stage.valid = bool(row.valid)
            stage.invalid_reason = str(row.invalid_reason) or None
    write_stages(run_dir, stages)
    write_parquet(run_dir, requests)

    summary_csv = run_dir / "summary.csv"
    summary.to_csv(summary_csv, index=False, float_format="%.3f")
    plots = write_plots(summary, run_dir / "plots")
    simulated = bool(summary["simulated"].any()) if len(summary) else False
    title = f"quantbench report — {meta.get('name', run_dir.name)}"
    if simulated:
        title += " (simulated)"
    report = ReportInput(title, headline(summary, slo), summary, plots, _meta_lines(meta, requests))
    report_md = run_dir / "report.md"
    report_md.write_text(render_markdown(report))
    report_html = run_dir / "report.html"
    report_html.write_text(render_html(report))
    return AnalysisResult(summary, summary_csv, report_md, report_html)
