"""`quantbench compare BASE_RUN NEW_RUN`: the nightly regression gate.

Reads both run directories, refuses runs that did not measure the same thing (one line
naming the field), computes every change with its interval (`analysis.regression`), prints
the table with regressions first, writes comparison.json and comparison.md into the new run
(its report then embeds the comparison) and whatever files the flags ask for.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import yaml
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from analysis.comparability import differences
from analysis.pipeline import Run, analyze, load_run, stage_figures, write_outputs
from analysis.regression import METRICS, RunFigures, compare_runs, invalid_stages
from analysis.regression_report import (
    COMPARISON_JSON,
    COMPARISON_MD,
    ROW_HEADERS,
    ComparisonDoc,
    junit_xml,
    markdown,
    row_cells,
)
from analysis.rundir import load_run_meta, write_text_atomic
from analysis.thresholds import Thresholds
from loadtest.config import load_unit
from quantbench.config import format_validation_error
from quantbench.errors import (
    EXIT_FAILED,
    EXIT_OK,
    ConfigError,
    InputError,
    NoValidStageError,
)

__all__ = ["add_compare_parser", "load_thresholds", "parse_metrics", "run_compare"]

_METRIC_LINES = textwrap.fill(
    ", ".join(METRICS), width=88, initial_indent="  ", subsequent_indent="  "
)

_HELP = f"""Compare a new run with a base run of the same benchmark, figure by figure.

For each target x stage in both runs and each metric, the change from base to new with a
95% interval from both runs' per-request records, and a verdict: regressed (the whole
interval is beyond the metric's threshold, on the worse side), improved, unchanged (the
whole interval is within +/- the threshold) or inconclusive (the interval reaches past the
threshold, or too few samples). Default thresholds: latency +5%, throughput -3%, error rate
+0.5 points; per metric and per target in --thresholds FILE.

metrics:
{_METRIC_LINES}

Writes comparison.json and comparison.md into NEW_RUN and rebuilds its report, which then
embeds the comparison.

thresholds file (YAML, every value in percent; the most specific wins):
  latency: 5            # any latency percentile
  throughput: 3         # output tok/s, req/s, goodput, max load within the SLO
  error_rate: 0.5       # percentage points
  metrics: {{tpot_p95: 4%}}
  targets: {{tgi-awq: {{latency: 8, metrics: {{ttft_p95: 10}}}}}}
  image_digest: warn    # or refuse: a different container image is not comparable

examples:
  quantbench compare runs/last-good runs/tonight
  quantbench compare base/ new/ --thresholds profiles/thresholds.yaml \\
      --markdown verdict.md --junit compare.xml --json compare.json

exit codes: 0 nothing regressed; 1 something regressed; 2 the runs are not comparable
(different workload, load plan, SLO, targets, model, GPU, or image digest when refused), the
same run given twice, a compared stage is invalid or missing in either run (a run that did
not finish: `quantbench run --resume` it), or bad input (one line on stderr); corrupt request
lines are left out with a warning.
"""


def add_compare_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    compare = commands.add_parser(
        "compare",
        help="regression gate: a new run against a base run, with confidence intervals",
        description=_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    compare.add_argument("base_run", type=Path, help="the base (last good) run directory")
    compare.add_argument("new_run", type=Path, help="the new (candidate) run directory")
    compare.add_argument(
        "--thresholds", type=Path, metavar="FILE", help="YAML thresholds (see above)"
    )
    compare.add_argument("--junit", type=Path, metavar="FILE", help="write JUnit XML here")
    compare.add_argument("--markdown", type=Path, metavar="FILE", help="write the verdict here")
    compare.add_argument("--json", type=Path, metavar="FILE", help="write every change here")
    compare.add_argument(
        "--metrics",
        action="append",
        metavar="NAMES",
        help="compare only these metrics, comma-separated or repeated (default: all)",
    )
    compare.add_argument(
        "--image-digest",
        choices=["warn", "refuse"],
        help="a target whose container image digest differs: warn (default) or refuse (exit 2)",
    )
    compare.add_argument(
        "--no-report",
        action="store_true",
        help="do not rebuild NEW_RUN's report (comparison.json/.md are still written)",
    )


def load_thresholds(path: Path | None) -> Thresholds:
    """The thresholds file through its model; every problem is one ConfigError line."""
    if path is None:
        return Thresholds()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not a YAML file ({one_problem(exc)})") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping (latency:, throughput:, metrics:, ...)")
    try:
        thresholds = Thresholds.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(str(path), exc)) from exc
    unknown = thresholds.unknown_metrics(set(METRICS))
    if unknown:
        raise ConfigError(f"{path}: unknown metric {unknown[0]!r}; known: {', '.join(METRICS)}")
    return thresholds


def one_problem(exc: Exception) -> str:
    return str(getattr(exc, "problem", None) or exc).splitlines()[0]


def parse_metrics(values: list[str] | None) -> list[str] | None:
    """`--metrics tpot_p95,output_tok_per_s` (repeatable) → names; unknown names are one line."""
    if not values:
        return None
    names = [n.strip() for value in values for n in value.split(",") if n.strip()]
    for name in names:
        if name not in METRICS:
            raise ConfigError(f"--metrics: unknown metric {name!r}; known: {', '.join(METRICS)}")
    return list(dict.fromkeys(names))


def _figures(run: Run) -> RunFigures:
    found = stage_figures(run)
    return RunFigures.of(found.summary, found.records, run.requests, run.stages, run.slo)


def _check_comparable(
    base_dir: Path, new_dir: Path, thresholds: Thresholds, thresholds_path: Path | None
) -> list[str]:
    """From the two run.json files alone, before any record is read."""
    base, new = load_run_meta(base_dir), load_run_meta(new_dir)
    same = base_dir.resolve() == new_dir.resolve() or (
        bool(base.run_id and base.started_at)
        and (base.run_id, base.started_at) == (new.run_id, new.started_at)
    )
    if same:  # it would always pass: a gate pointed at tonight's run twice checks nothing
        raise InputError(
            f"{base_dir} and {new_dir} are the same run ({new.run_id or new_dir.name}); "
            "give the base (last good) run first and the new run second"
        )
    refusals, warnings = differences(base, new, thresholds.image_digest)
    if refusals:
        more = f" (and {len(refusals) - 1} more)" if len(refusals) > 1 else ""
        raise InputError(f"{base_dir} and {new_dir} are not comparable: {refusals[0].text()}{more}")
    names = [t.name for t in new.targets]
    unknown = sorted(set(thresholds.targets) - set(names))
    if unknown:  # a misspelt target would silently be judged by the defaults
        raise ConfigError(
            f"{thresholds_path}: targets: {unknown[0]!r} is not a target of these runs "
            f"(have: {', '.join(names)}); fix its spelling or remove it"
        )
    return [w.text() for w in warnings]


def _damage(runs: dict[str, Run]) -> list[str]:
    """Records left out of either run (corrupt lines), one warning each: said, never silent."""
    return [f"{side} run {run.run_dir}: {problem}" for side, run in runs.items()
            for problem in run.problems]  # fmt: skip


# The request fields the gate reads (validity, figures, intervals, server reconciliation);
# a run whose report is rebuilt is read whole.
GATE_COLUMNS = [
    "target", "stage", "mode", "load", "warmup", "outcome", "http_status", "error",
    "wall_sent_s", "scheduled_ns", "sent_ns", "end_ns", "prompt_tokens", "output_tokens",
    "schedule_lag_ms", "ttft_ms", "tpot_ms", "e2e_ms", "itl_ms",
]  # fmt: skip


def _load(run_dir: Path, whole: bool) -> tuple[Run, RunFigures]:
    run = load_run(run_dir, None if whole else GATE_COLUMNS)
    return run, _figures(run)


def _stage_text(figures: RunFigures, target: str, stage: int) -> str:
    row = figures.row(target, stage)
    assert row is not None
    return f"target {target} stage {stage} ({load_unit(str(row['mode']), float(row['load']))})"


def _check_valid(base: RunFigures, new: RunFigures, runs: dict[str, Path]) -> None:
    """Every stage measured in both runs, and valid in both: else the runs cannot answer."""
    sides = {"base": base, "new": new}
    keys = {
        side: [(str(r.target), int(r.stage)) for r in figures.summary.itertuples()]
        for side, figures in sides.items()
    }
    for side, other in (("base", "new"), ("new", "base")):
        missing = [key for key in keys[side] if key not in keys[other]]
        if missing:
            raise NoValidStageError(
                f"{side} run {runs[side]} measured {_stage_text(sides[side], *missing[0])} but "
                f"the {other} run {runs[other]} did not: it stopped early; finish it with "
                f"`quantbench run --resume {runs[other]}`, or compare two complete runs"
            )
    if not keys["new"]:
        raise NoValidStageError(f"{runs['base']} and {runs['new']} have no stage to compare")
    bad = invalid_stages(base, new, keys["new"])
    if bad:
        side, target, stage, why = bad[0]
        more = f" (and {len(bad) - 1} more invalid stages)" if len(bad) > 1 else ""
        raise NoValidStageError(
            f"{side} run {runs[side]}: {_stage_text(sides[side], target, stage)} is invalid "
            f"({why}), so the runs cannot be compared there{more}"
        )


def _simulated(run: Run) -> bool:
    return any(t.simulated for t in run.meta.targets)


def render(doc: ComparisonDoc, console: Console) -> None:
    """The terminal table: regressions first; unchanged figures only counted."""
    table = Table(title=doc.title, title_justify="left", expand=False)
    for header in ("verdict", *ROW_HEADERS):
        table.add_column(header, overflow="fold")
    style = {"regressed": "bold red", "improved": "green", "inconclusive": "yellow"}
    rows = [r for r in doc.table.to_dict("records") if r["verdict"] != "unchanged"]
    for row in rows:
        table.add_row(row["verdict"], *row_cells(row), style=style.get(row["verdict"]))
    console.print(table if rows else doc.title)
    counts = doc.counts
    console.print(", ".join(f"{counts[v]} {v}" for v in counts) + f" of {len(doc.table)} figures")
    for warning in doc.warnings:
        console.print(f"warning: {warning}")


def _write(doc: ComparisonDoc, args: argparse.Namespace, new_dir: Path) -> None:
    text_json = json.dumps(doc.to_json(), indent=1) + "\n"
    text_md = markdown(doc)
    write_text_atomic(new_dir / COMPARISON_JSON, text_json)
    write_text_atomic(new_dir / COMPARISON_MD, text_md)
    for path, text in ((args.json, text_json), (args.markdown, text_md)):
        if path is not None:
            path.write_text(text, encoding="utf-8")
    if args.junit is not None:
        args.junit.write_text(junit_xml(doc), encoding="utf-8")


def run_compare(args: argparse.Namespace, console: Console) -> int:
    thresholds = load_thresholds(args.thresholds)
    if args.image_digest is not None:
        thresholds = thresholds.model_copy(update={"image_digest": args.image_digest})
    metrics = parse_metrics(args.metrics)
    warnings = _check_comparable(args.base_run, args.new_run, thresholds, args.thresholds)
    # Both runs at once: Arrow's parquet reader and numpy's selections release the GIL.
    with ThreadPoolExecutor(max_workers=2) as pool:
        loading = [
            pool.submit(_load, args.base_run, False),
            pool.submit(_load, args.new_run, not args.no_report),
        ]
        (base, figures_base), (new, figures_new) = (job.result() for job in loading)
    for damage in _damage({"base": base, "new": new}):
        print(f"quantbench: warning: {damage}", file=sys.stderr)
        warnings.append(damage)
    _check_valid(figures_base, figures_new, {"base": base.run_dir, "new": new.run_dir})
    table = compare_runs(figures_base, figures_new, thresholds, metrics)
    doc = ComparisonDoc(
        base_run=base.meta.run_id or base.run_dir.name,
        new_run=new.meta.run_id or new.run_dir.name,
        base_dir=str(base.run_dir),
        new_dir=str(new.run_dir),
        table=table,
        warnings=warnings,
        simulated=_simulated(base) or _simulated(new),
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    _write(doc, args, new.run_dir)
    render(doc, console)
    if not args.no_report:
        result = write_outputs(analyze(replace(new, base_comparison=doc)))
        console.print(f"report:  {result.report_html}")
    print(new.run_dir / COMPARISON_MD)
    return EXIT_FAILED if doc.regressed else EXIT_OK
