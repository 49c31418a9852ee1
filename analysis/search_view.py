"""A run's SLO searches (`load.mode: search`): each target's path and answer, read back from
search.jsonl, as the capacity its verdict and plan use and as a report section (pure).

The answer is the search's own (`loadtest.search.replay` of the recorded steps): the middle
of the bracket between the highest rate that met the SLO and the lowest that broke it, ± its
half-width. The search judged each stage on its SLO counts while it ran; a stage the analysis
then finds invalid (the generator fell behind, a server restart...) is unknown, so it counts
as broken (`judged`): no answer rests on a stage whose figures are not trusted. The achieved
request and token rates there are the met stage's, scaled to the answer. It stands for the
config's SLO only: a plan asked with another SLO interpolates between the stages as for any
run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import ValidationError

from analysis.capacity import Capacity
from analysis.document import Block, Heading, Paragraph, Table
from loadtest.config import SearchConfig
from loadtest.jsonl import read_jsonl
from loadtest.search import SEARCH_FILE, Answer, Bracket, SearchStep, replay

__all__ = [
    "Search",
    "judged",
    "load_searches",
    "search_blocks",
    "searched_capacity",
    "with_searches",
]


@dataclass(frozen=True)
class Search:
    """One target's search: its steps in order, the bracket after each, and its answer."""

    target: str
    steps: list[SearchStep]
    answer: Answer
    brackets: list[Bracket]
    settings: SearchConfig
    invalid: dict[int, str] = field(default_factory=dict)  # stage -> why it is not trusted

    def text(self) -> str:
        """The answer, and the stages it could not count."""
        unknown = [
            f"stage {s.stage + 1} at {s.rate:.4g} req/s is invalid ({self.invalid[s.stage]})"
            for s in self.steps
            if s.stage in self.invalid and s.verdict == "met" and not s.behind
        ]
        note = "; ".join(unknown)
        return self.answer.text() + (f"; counted as broken: {note}" if note else "")


def _step(raw: bytes) -> SearchStep:
    return SearchStep.model_validate_json(raw)


def _replayed(
    target: str,
    steps: list[SearchStep],
    settings: SearchConfig,
    invalid: Mapping[int, str] | None = None,
) -> Search:
    """The search rebuilt from its steps, an `invalid` stage's verdict taken as none."""
    invalid = dict(invalid or {})
    # a `behind` step is invalid too, and stays a limit of the generator (`record_step`)
    search, brackets = replay(steps, settings, untrusted=invalid)
    answer = search.answer()
    if answer.status == "unfinished" and any(
        s.stage in invalid and s.verdict == "met" for s in steps
    ):
        answer = replace(answer, why="a stage it counted as met turned out invalid")
    return Search(target, steps, answer, brackets, settings, invalid)


def judged(searches: Mapping[str, Search], summary: pd.DataFrame) -> dict[str, Search]:
    """Each search with the stages summary.csv found invalid counted as broken."""
    out = {}
    for target, search in searches.items():
        rows = summary[(summary["target"] == target) & ~summary["valid"].astype(bool)]
        reasons = {int(r.stage): str(r.invalid_reason) for r in rows.itertuples()}
        probed = {s.stage for s in search.steps}
        invalid = {stage: why for stage, why in reasons.items() if stage in probed}
        out[target] = _replayed(target, search.steps, search.settings, invalid)
    return out


def load_searches(run_dir: Path, config: Mapping[str, Any]) -> dict[str, Search]:
    """Each searched target's path and answer (empty for a run that did not search)."""
    path = run_dir / SEARCH_FILE
    load = config.get("load") or {}
    if not path.exists() or load.get("mode") != "search":
        return {}
    try:
        settings = SearchConfig.model_validate(load.get("search") or {})
    except ValidationError:
        settings = SearchConfig()
    by_target: dict[str, list[SearchStep]] = {}
    for step in read_jsonl(path, _step).rows:
        by_target.setdefault(step.target, []).append(step)
    return {
        target: _replayed(target, sorted(steps, key=lambda s: s.step), settings)
        for target, steps in by_target.items()
    }


def _scaled(rows: pd.DataFrame, load: float, to: float, column: str) -> float | None:
    at = rows[rows["load"] == load]
    if at.empty or pd.isna(at[column].iloc[0]):
        return None
    return float(at[column].iloc[0]) * to / load


def searched_capacity(rows: pd.DataFrame, search: Search) -> Capacity:
    """The SLO limit a search found, as the capacity the verdict and the plan show."""
    answer, target = search.answer, search.target
    text = search.text()
    if answer.status in ("found", "above_max", "unfinished") and answer.low is not None:
        rate = answer.rate if answer.rate is not None else answer.low
        status = {"found": "searched", "above_max": "max_tested"}.get(answer.status, "at_stage")
        return Capacity(
            target,
            "rate",
            status,  # type: ignore[arg-type]
            rate,
            _scaled(rows, answer.low, rate, "req_per_s"),
            _scaled(rows, answer.low, rate, "output_tok_per_s"),
            f"search: {text}",
            half_width=answer.half_width if answer.status == "found" else None,
        )
    return Capacity(target, "rate", "none", limited_by=f"search: {text}")


def search_blocks(searches: Mapping[str, Search], labels: Mapping[str, str]) -> list[Block]:
    """The report's section: every probed stage of each search, then its answer."""
    if not searches:
        return []
    blocks: list[Block] = [
        Heading("SLO search"),
        Paragraph(
            "Each row is one probed stage, in the order it ran (a normal rate stage of this "
            "run). A stage ends early once its counts decide the SLO with a 3σ margin; a "
            "stage without a verdict (too few samples) counts as broken. The answer is the "
            "middle of the last bracket, ± its half-width. A stage the analysis found "
            "invalid (see the validity table) is unknown and counts as broken too."
        ),
    ]
    for target, search in searches.items():
        rows = []
        for s, (low_rate, high_rate) in zip(search.steps, search.brackets, strict=True):
            verdict = (
                "generator behind"
                if s.behind
                else "invalid"
                if s.stage in search.invalid
                else s.verdict or "no verdict"
            )
            low = "–" if low_rate is None else f"{low_rate:.4g}"
            high = "–" if high_rate is None else f"{high_rate:.4g}"
            over = ", ".join(str(n) for n in s.over) or "–"
            rows.append(
                [str(s.step + 1), str(s.stage), f"{s.rate:.4g}", verdict,
                 "yes" if s.early else "no", str(s.ok), str(s.failed), over,
                 f"{low} – {high}"]
            )  # fmt: skip
        blocks.append(Paragraph(f"{labels.get(target, target)}: {search.text()}"))
        headers = ["step", "stage", "req/s offered", "SLO", "ended early", "ok", "failed",
                   "over limit", "bracket after (req/s)"]  # fmt: skip
        blocks.append(Table(headers, rows))
    return blocks


def with_searches(
    caps: dict[str, Capacity], per_load: pd.DataFrame, searches: Mapping[str, Search] | None
) -> dict[str, Capacity]:
    """`caps` with each searched target's capacity replaced by its search's answer."""
    if not searches:
        return caps
    out = dict(caps)
    for target, search in searches.items():
        if target in out:
            rows = per_load[per_load["target"] == target]
            out[target] = replace(searched_capacity(rows, search), skipped=out[target].skipped)
    return out
