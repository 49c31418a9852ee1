"""`quantbench history RUNS...`: trends across nightly runs, change points, suspect nights.

Each run's figures come from its summary.csv (written at the end of every run and by
`quantbench report`); a run without one is analysed in memory (nothing is written into it).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import pandas as pd
from pydantic import ValidationError
from rich.console import Console

from analysis.comparability import differences
from analysis.config import SloConfig
from analysis.history import Night, history
from analysis.history_report import findings, write_history
from analysis.pipeline import load_run, stage_figures, unfinished_notes
from analysis.rundir import RUN_FILE, load_run_meta
from loadtest.run_meta import RunMeta
from quantbench.compare_cli import load_thresholds, parse_metrics
from quantbench.errors import EXIT_OK, ConfigError, InputError

__all__ = ["add_history_parser", "collect_runs", "run_history"]

_HELP = """Trends of a nightly benchmark: for each target x stage and each metric, the figure
night by night (runs ordered by start time), with change points (a lasting shift of level
that the PELT search of the `ruptures` library finds beyond the night-to-night noise and
that is at least the metric's regression threshold) and suspect nights (far from the median
of the recent nights on the same level). Invalid stages are gaps, never values.

Writes history.csv, history.html (self-contained, charts embedded) and the charts to --out;
prints the findings and the path of history.html last.

examples:
  quantbench history runs/nightly/                 every run directory in the folder
  quantbench history runs/2026-11-0* --out trends/
  quantbench history runs/nightly/ --thresholds thresholds.yaml --metrics tpot_p95,output_tok_per_s

exit codes: 0 done (findings are not failures); 2 fewer than two runs, or a run that cannot
be read (one line on stderr).
"""


def add_history_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "history",
        help="trends, change points and suspect nights across nightly runs",
        description=_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "runs", type=Path, nargs="+", help="run directories, or one folder of run directories"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("history"),
        help="folder for the outputs (default: history/)",
    )
    parser.add_argument(
        "--thresholds",
        type=Path,
        metavar="FILE",
        help="the thresholds file of `quantbench compare` (a change smaller is not reported)",
    )
    parser.add_argument(
        "--metrics",
        action="append",
        metavar="NAMES",
        help="only these metrics, comma-separated or repeated (default: all)",
    )


def collect_runs(paths: list[Path]) -> list[Path]:
    """The run directories named, or those inside one folder that is not a run itself."""
    if len(paths) == 1 and paths[0].is_dir() and not (paths[0] / RUN_FILE).exists():
        found = sorted(p for p in paths[0].iterdir() if (p / RUN_FILE).exists())
        if not found:
            raise InputError(f"{paths[0]}: no run directory (with {RUN_FILE}) inside it")
        return found
    return paths


def _night(run_dir: Path, meta: RunMeta) -> Night:
    try:
        slo = SloConfig.model_validate(meta.config.get("slo") or {})
    except ValidationError as exc:
        raise InputError(f"{run_dir / RUN_FILE}: config.slo unreadable") from exc
    csv = run_dir / "summary.csv"
    if csv.exists():
        try:
            summary = pd.read_csv(csv)
        except (OSError, ValueError, pd.errors.ParserError) as exc:
            raise InputError(
                f"{csv}: unreadable ({exc}); rebuild it: quantbench report {run_dir}"
            ) from exc
        if not {"target", "stage", "valid", "simulated"} <= set(summary.columns):
            raise InputError(f"{csv}: not a summary.csv; rebuild it: quantbench report {run_dir}")
    else:
        summary = stage_figures(load_run(run_dir)).summary
    return Night(meta.run_id or run_dir.name, meta.started_at or "", summary, slo)


def setup_changes(metas: dict[Path, RunMeta]) -> list[str]:
    """Where a night measured something else than the night before (workload, load plan, SLO,
    a target's stack, quantization, model or GPU): its series would mix two measurements, so a
    change point there may be the setup's. A target added or dropped is only a gap."""
    ordered = sorted(
        ((meta, path) for path, meta in metas.items()),
        key=lambda pair: (pair[0].started_at or "", pair[0].run_id or pair[1].name),
    )  # the nights' order
    lines = []
    for (before, _), (meta, path) in itertools.pairwise(ordered):
        refusals, _ = differences(before, meta)
        changed = [d.text() for d in refusals if d.field != "targets"]
        if changed:
            more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
            lines.append(
                f"{path} measured another setup than the night before it: {changed[0]}{more}; "
                "a change point there may be that, not the stack"
            )
    return lines


def run_history(args: argparse.Namespace, console: Console) -> int:
    thresholds = load_thresholds(args.thresholds)
    metrics = parse_metrics(args.metrics)
    metas = {path: load_run_meta(path) for path in collect_runs(args.runs)}
    nights = sorted(
        (_night(path, meta) for path, meta in metas.items()), key=lambda n: (n.started_at, n.run)
    )
    if len(nights) < 2:
        raise ConfigError(f"history needs at least two runs; got {len(nights)}")
    unfinished = [
        f"{path}: {note} Until then its missing stages are gaps in the history, not changes."
        for path, meta in metas.items()
        for note in unfinished_notes(path, meta)
    ]
    for line in unfinished + setup_changes(metas):
        print(f"quantbench history: warning: {line}", file=sys.stderr)
    table = history(nights, thresholds, metrics)
    try:
        csv, html = write_history(table, args.out)
    except OSError as exc:
        raise ConfigError(
            f"--out {args.out}: cannot write the history there ({exc.strerror or exc}); "
            "choose a writable folder"
        ) from exc
    lines = findings(table)
    series = len(table[["target", "stage"]].drop_duplicates())
    console.print(f"{len(nights)} nights, {series} target x stage series")
    for line in lines or ["no change point and no suspect night"]:
        console.print(f"  {line}")
    console.print(f"history: {csv}")
    print(html)
    return EXIT_OK
