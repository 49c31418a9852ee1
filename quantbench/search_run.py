"""`load.mode: search` for one target: one Locust rate stage at a time, each chosen from what
the earlier ones showed (`loadtest.search.RateSearch`), until the answer is within precision.

Every probed stage is a normal `rate` stage of the run directory (its records, its window in
stages.jsonl, its summary row); its verdict — from its counts, as the generator judged it if
it ended early (`loadtest.shapes.SloStage`), else from its point estimate — is appended to
search.jsonl at once, so a killed search keeps its path and `--resume` goes on from it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from analysis.config import SloConfig
from analysis.stats import quantile
from loadtest.config import LocustSettings, SearchConfig, SloLimit
from loadtest.jsonl import read_jsonl
from loadtest.limits import accurate_rate_limit
from loadtest.records import REQUESTS_FILE, STAGES_FILE, RecordWriter
from loadtest.search import SEARCH_FILE, RateSearch, SearchStep
from loadtest.slo_counts import Limit, Tally, judge
from quantbench.locustproc import LocustProgress
from quantbench.progress import StageProgress

__all__ = ["done_steps", "run_search", "slo_limits", "stage_tally"]

RunStage = Callable[[LocustSettings, Callable[[LocustProgress], None]], None]


def slo_limits(slo: SloConfig) -> list[SloLimit]:
    """The SLO's objectives as the generator judges them (quantiles as fractions)."""
    return [
        SloLimit(metric=o.metric, quantile=o.percentile / 100, limit_ms=o.limit_ms)
        for o in slo.objectives()
    ]


def _limits(settings: list[SloLimit]) -> tuple[Limit, ...]:
    return tuple(Limit(s.metric, s.quantile, s.limit_ms) for s in settings)


def stage_tally(
    run_dir: Path, target: str, stage: int, limits: tuple[Limit, ...]
) -> tuple[Tally, float | None]:
    """A stage's measured requests, counted as the generator counts them, and the p99 of
    their schedule lag (None without one): the analysis's test of an open-loop stage."""
    tally, lags = Tally(), []
    rows: list[Any] = read_jsonl(run_dir / REQUESTS_FILE).rows
    for row in rows:
        if not isinstance(row, dict) or row.get("target") != target or row.get("warmup"):
            continue
        if row.get("stage") != stage:
            continue
        figures = [row.get(f"{limit.metric}_ms") for limit in limits]
        tally = tally + Tally.of(row.get("outcome") == "ok", figures, limits)
        if isinstance(row.get("schedule_lag_ms"), int | float):
            lags.append(float(row["schedule_lag_ms"]))
    return tally, quantile(lags, 0.99).value if lags else None


def _ended_by(run_dir: Path, target: str, stage: int) -> str | None:
    rows: list[Any] = read_jsonl(run_dir / STAGES_FILE).rows
    for row in rows:
        if isinstance(row, dict) and row.get("target") == target and row.get("stage") == stage:
            return str(row.get("ended_by"))
    return None


def done_steps(run_dir: Path, target: str) -> list[SearchStep]:
    """The steps of a target's search recorded so far (a resumed run goes on from them)."""
    path = run_dir / SEARCH_FILE
    if not path.exists():
        return []
    rows: list[Any] = read_jsonl(path).rows
    return [
        SearchStep.model_validate(row)
        for row in rows
        if isinstance(row, dict) and row.get("target") == target
    ]


def _bracket(search: RateSearch) -> str:
    low = "–" if search.low is None else f"{search.low:.3g}"
    high = "–" if search.high is None else f"{search.high:.3g}"
    return f"met ≤ {low}, broken ≥ {high} req/s"


def run_search(
    settings: LocustSettings,
    config: SearchConfig,
    slo: list[SloLimit],
    console: Console,
    run_stage: RunStage,
    stage_offset: int = 0,
    max_schedule_lag_ms: float | None = None,
) -> RateSearch:
    """Probe rates until the search has its answer; returns the search (its `answer()`).

    `settings` is the target's Locust settings (a rate profile whose stages are replaced);
    each stage runs through `run_stage(settings, on_progress)` (Locust, in `quantbench run`).
    A stage whose p99 schedule lag passes `max_schedule_lag_ms` (the analysis's validity
    bound) gets no verdict: the generator, not the target, set its pace; the search then
    stays below that rate and, if the SLO holds up to there, answers "at least" with the
    generator named as the limit."""
    load, target, run_dir = settings.load, settings.endpoint.name, settings.run_dir
    limits = _limits(slo)
    search = RateSearch(config, ceiling=accurate_rate_limit(load, settings.workload))
    for step in done_steps(run_dir, target):
        search.record_step(step)
    journal = RecordWriter(run_dir / SEARCH_FILE)
    while (rate := search.next_rate()) is not None:
        stage = stage_offset + search.steps
        console.print(
            f"  {target}: search step {search.steps + 1}: {rate:.4g} req/s ({_bracket(search)})",
            highlight=False,
        )
        step_settings = settings.model_copy(
            update={
                "load": load.stage_load("rate", [rate]),
                "stage_offset": stage,
                "first_stage": 0,
                "slo": slo if config.early_stop else [],
            }
        )
        with StageProgress(console, target, step_settings.load, settings.goal) as progress:
            run_stage(step_settings, progress)
        tally, lag = stage_tally(run_dir, target, stage, limits)
        early = _ended_by(run_dir, target, stage) == "slo"
        verdict = judge(tally, limits, settings.goal.max_error_rate, early=early)
        behind = lag is not None and max_schedule_lag_ms is not None and lag > max_schedule_lag_ms
        if behind:
            verdict = None
            search.record_behind(rate)
        else:
            search.record(rate, verdict)
        step = SearchStep(
            target=target, step=search.steps - 1, stage=stage, rate=rate, verdict=verdict,
            early=early, ok=tally.ok, failed=tally.failed, over=list(tally.over),
            low=search.low, high=search.high, max_rate=search.max_rate, behind=behind,
        )  # fmt: skip
        journal.write(step)
        if behind:
            said = (
                f"no verdict: the generator fell behind its schedule (p99 lag {lag:.1f} ms), "
                "so no higher rate is offered"
            )
        else:
            said = verdict or "no verdict (too few samples): counted as broken"
        console.print(f"  {target}: {rate:.4g} req/s: SLO {said}{' (early)' if early else ''}")
    journal.close()
    console.print(f"[bold]{target}[/]: SLO limit {search.answer().text()}", highlight=False)
    return search
