"""What the terminal shows at the end of `run`: a table per target × stage, the invalid
stages and the targets that met the SLO nowhere, and the verdict (the report's headline).

Rendering only: every figure comes from the analysis (summary.csv's rows, the comparison).
`make_console`: on a terminal rich uses its width and colours; in a pipe or a file lines
are never wrapped — rich would otherwise break them at 80 columns — and carry no colour.
"""

from __future__ import annotations

import math
import re
import sys
from typing import Any

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from analysis.compare import Comparison
from analysis.config import SloConfig, percentile_word
from loadtest.config import load_unit

__all__ = ["make_console", "print_run_end", "summary_table", "unmet_targets"]

_PIPE_WIDTH = 250  # wide enough for the summary table of any run, so nothing wraps


def make_console(file: Any = None) -> Console:
    """The console for stdout (or `file`): a terminal's width, or no wrapping at all."""
    stream = file if file is not None else sys.stdout
    if stream.isatty():
        return Console(file=file, highlight=False)
    return Console(file=file, highlight=False, soft_wrap=True, width=_PIPE_WIDTH)


def _ms(value: Any) -> str:
    number = pd.to_numeric(value, errors="coerce")
    if number is None or (isinstance(number, float) and math.isnan(number)):
        return "–"
    return f"{number:,.0f}" if number >= 100 else f"{number:.3g}"


def _rate(value: Any) -> str:
    number = pd.to_numeric(value, errors="coerce")
    if number is None or (isinstance(number, float) and math.isnan(number)):
        return "–"
    return f"{number:,.0f}" if number >= 100 else f"{number:.3g}"


def _slo_percentile(slo: SloConfig) -> float:
    return max(slo.percentiles() or {95.0})


def summary_table(summary: pd.DataFrame, slo: SloConfig) -> Table:
    """One row per target × stage: load, req/s, output tok/s, TTFT and TPOT at p50 and the
    SLO's percentile (ms), errors, and whether the stage is valid (invalid rows in red)."""
    p = percentile_word(_slo_percentile(slo))
    repeats = "repeat" in summary and bool((summary["repeat"].fillna(0) > 0).any())
    modes = set(summary["mode"].astype(str)) if len(summary) else {"concurrency"}
    unit = load_unit(modes.pop()) if len(modes) == 1 else "load"
    table = Table(title="Stages", title_justify="left", box=None, header_style="bold",
                  pad_edge=False)  # fmt: skip
    table.add_column("target")
    table.add_column("stage", justify="right")
    if repeats:
        table.add_column("repeat", justify="right")
    table.add_column(unit, justify="right")
    for header in ("req/s", "out tok/s", "TTFT p50", f"p{p}", "TPOT p50", f"p{p}"):
        table.add_column(header, justify="right")
    table.add_column("errors", justify="right")
    table.add_column("valid")
    for _, row in summary.iterrows():
        valid = bool(row["valid"])
        errors = int(row["errors"])
        share = f" ({row['error_rate']:.0%})" if errors else ""
        cells = [escape(str(row["target"])), str(int(row["stage"]) + 1)]
        if repeats:
            cells.append(str(int(row["repeat"]) + 1))
        cells += [
            f"{float(row['load']):g}" if unit != "load" else _load_text(row),  # mixed: units
            _rate(row["req_per_s"]),
            _rate(row["output_tok_per_s"]),
            _ms(row.get("ttft_p50_ms")),
            _ms(row.get(f"ttft_p{p}_ms")),
            _ms(row.get("tpot_p50_ms")),
            _ms(row.get(f"tpot_p{p}_ms")),
            f"{errors:,}{share}",
            "yes" if valid else "no",
        ]
        table.add_row(*cells, style=None if valid else "red")
    table.caption = "latencies in ms; invalid stages (red) are unknown and left out of the verdict"
    table.caption_justify = "left"
    return table


def unmet_targets(comparison: Comparison) -> tuple[list[str], list[str]]:
    """(targets measured that met the SLO at no valid stage, targets with no valid stage)."""
    caps = comparison.capacity
    never = [t for t in comparison.ranking if caps[t].measured and not caps[t].sustains]
    unmeasured = [t for t in comparison.ranking if not caps[t].measured]
    return never, unmeasured


_BOLD = re.compile(r"\*\*(.+?)\*\*")
_ITALIC = re.compile(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])")


def _markup(markdown: str) -> str:
    """A headline sentence (markdown emphasis) as rich markup."""
    text = escape(markdown)
    text = _BOLD.sub(r"[bold]\1[/bold]", text)
    return _ITALIC.sub(r"[italic]\1[/italic]", text)


def _load_text(row: pd.Series) -> str:
    return load_unit(str(row["mode"]), float(row["load"]))


def print_run_end(
    console: Console, summary: pd.DataFrame, comparison: Comparison | None,
    headline: list[str], slo: SloConfig,
) -> None:  # fmt: skip
    """The end of `run`'s output: the table, what is unknown or failed, and the verdict."""
    if summary.empty:
        console.print("[yellow]No stage completed: nothing to summarise.[/]")
        return
    console.print()
    console.print(summary_table(summary, slo))
    invalid = summary[~summary["valid"].astype(bool)]
    if len(invalid):
        console.print()
        console.print("[bold red]Invalid stages[/] (unknown: left out of the verdict):")
        for _, row in invalid.iterrows():
            where = f"{row['target']} stage {int(row['stage']) + 1} ({_load_text(row)})"
            console.print(f"  [red]{escape(where)}[/]: {escape(str(row['invalid_reason']))}")
    if comparison is not None:
        never, unmeasured = unmet_targets(comparison)
        if never:
            console.print(f"[bold red]Met the SLO at no valid stage:[/] {', '.join(never)}")
        if unmeasured:
            console.print(
                f"[bold red]Not measured[/] (no valid stage, no verdict): {', '.join(unmeasured)}"
            )
    console.print()
    console.print("[bold]Verdict[/]")
    for line in headline:
        console.print(f"  {_markup(line)}")
