"""What `quantbench compare` writes (formatting only): comparison.json (the one
machine-readable result, also read back by the new run's report), the Markdown verdict for a
CI job summary, JUnit XML for CI test tabs, and the report section, all from one
`ComparisonDoc`.
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.document import Block, Bullets, Heading, Paragraph, Table, to_markdown
from analysis.regression import CHANGE_COLUMNS, VERDICTS
from loadtest.config import load_unit

__all__ = [
    "COMPARISON_JSON",
    "COMPARISON_MD",
    "ROW_HEADERS",
    "ComparisonDoc",
    "change_text",
    "comparison_blocks",
    "junit_xml",
    "load_comparison",
    "markdown",
    "row_cells",
    "where_text",
]

COMPARISON_JSON = "comparison.json"
COMPARISON_MD = "comparison.md"
_VERSION = 1


@dataclass(frozen=True)
class ComparisonDoc:
    """A finished comparison: both runs, every change row, what was only warned about."""

    base_run: str
    new_run: str
    base_dir: str
    new_dir: str
    table: pd.DataFrame
    warnings: list[str] = field(default_factory=list)
    simulated: bool = False
    created_at: str = ""

    @property
    def counts(self) -> dict[str, int]:
        found = self.table["verdict"].value_counts().to_dict() if len(self.table) else {}
        return {v: int(found.get(v, 0)) for v in VERDICTS}

    @property
    def regressed(self) -> bool:
        return self.counts["regressed"] > 0

    @property
    def title(self) -> str:
        tag = " (simulated)" if self.simulated else ""
        word = "REGRESSED" if self.regressed else "no regression"
        return f"quantbench compare: {word}{tag}"

    def to_json(self) -> dict[str, Any]:
        rows = [{k: _plain(v) for k, v in row.items()} for row in self.table.to_dict("records")]
        return {
            "version": _VERSION,
            "verdict": "regressed" if self.regressed else "passed",
            "counts": self.counts,
            "base_run": self.base_run,
            "new_run": self.new_run,
            "base_dir": self.base_dir,
            "new_dir": self.new_dir,
            "simulated": self.simulated,
            "created_at": self.created_at,
            "warnings": self.warnings,
            "changes": rows,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ComparisonDoc:
        table = pd.DataFrame(data.get("changes") or [], columns=CHANGE_COLUMNS)
        return cls(
            base_run=str(data.get("base_run", "")),
            new_run=str(data.get("new_run", "")),
            base_dir=str(data.get("base_dir", "")),
            new_dir=str(data.get("new_dir", "")),
            table=table,
            warnings=[str(w) for w in data.get("warnings") or []],
            simulated=bool(data.get("simulated", False)),
            created_at=str(data.get("created_at", "")),
        )


def _plain(value: Any) -> Any:
    """JSON-safe: NaN and infinities become null, numpy scalars Python numbers."""
    if value is None:
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def load_comparison(run_dir: Path) -> ComparisonDoc | None:
    """The comparison `quantbench compare` left in a run directory, or None (also when the
    file cannot be read: the report is then written without that section)."""
    path = run_dir / COMPARISON_JSON
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return ComparisonDoc.from_json(data) if isinstance(data, dict) else None


def _pct(value: float) -> str:
    return f"{100 * value:+.1f}%"


def _points(value: float) -> str:
    return f"{100 * value:+.2f} pt"


def _finite(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and not math.isfinite(value))


def change_text(row: dict[str, Any]) -> str:
    """`+10.2% [+8.1%, +12.4%]`, `+0.40 pt [−0.10, +0.90]`, or `n/a`."""
    if not _finite(row.get("change")):
        return "n/a" if row.get("change") is None else "from none"
    show = _points if row["metric"] == "error_rate" else _pct
    low = show(row["low"]) if _finite(row.get("low")) else "−∞"
    high = show(row["high"]) if _finite(row.get("high")) else "+∞"
    return f"{show(row['change'])} [{low}, {high}]"


def _threshold_text(row: dict[str, Any]) -> str:
    value = float(row["threshold"])
    if row["metric"] == "error_rate":
        return f"+{100 * value:g} pt"
    return f"+{100 * value:g}%" if row["unit"] == "ms" else f"−{100 * value:g}%"


_SHOWN_UNITS = ("ms", "tok/s", "req/s")


def _figure(value: Any, unit: str) -> str:
    if not _finite(value):
        return "n/a"
    number = float(value)
    if unit == "%":
        return f"{100 * number:.2f}%"
    text = f"{number:,.0f}" if abs(number) >= 1000 else f"{number:.3g}"
    return f"{text} {unit}" if unit in _SHOWN_UNITS else text  # "7.46" alone: ms? s?


def where_text(row: dict[str, Any]) -> str:
    """`stage 1 (16 users)` for a stage, `all stages` for a target's capacity."""
    stage = row.get("stage")
    if stage is None or (isinstance(stage, float) and math.isnan(stage)):
        return "all stages"
    return f"stage {int(stage)} ({load_unit(str(row['mode']), float(row['load']))})"


ROW_HEADERS = ["target", "where", "metric", "base", "new", "change [95% CI]"]


def row_cells(row: dict[str, Any]) -> list[str]:
    """One change row as text, under `ROW_HEADERS` (the terminal and the documents)."""
    return [
        str(row["target"]),
        where_text(row),
        str(row["label"]),
        _figure(row["base"], row["unit"]),
        _figure(row["new"], row["unit"]),
        change_text(row),
    ]


def _table(rows: list[dict[str, Any]]) -> Table:
    headers = ["verdict", *ROW_HEADERS, "threshold", "why"]
    cells = []
    for row in rows:
        verdict = "**REGRESSED**" if row["verdict"] == "regressed" else row["verdict"]
        cells.append([verdict, *row_cells(row), _threshold_text(row), str(row["reason"])])
    return Table(headers, cells)


def comparison_blocks(doc: ComparisonDoc, title: str | None = None, level: int = 1) -> list[Block]:
    """The verdict, both runs, and every figure that is not `unchanged` (regressions first);
    the unchanged ones are counted."""
    counts = doc.counts
    blocks: list[Block] = [Heading(title or doc.title, level)]
    facts = [
        f"base run: `{doc.base_run}` ({doc.base_dir})",
        f"new run: `{doc.new_run}` ({doc.new_dir})",
        ", ".join(f"{counts[v]} {v}" for v in VERDICTS) + f" of {len(doc.table)} figures",
    ]
    if doc.simulated:
        facts.append("*simulated*: figures from simulated stacks, not from a GPU")
    blocks.append(Bullets(facts + [f"warning: {w}" for w in doc.warnings]))
    shown = [r for r in doc.table.to_dict("records") if r["verdict"] != "unchanged"]
    if shown:
        blocks.append(_table(shown))
    blocks.append(
        Paragraph(
            "A figure regresses only when its whole 95% interval lies beyond its threshold; "
            "*inconclusive* means the interval reaches past it (more samples would decide). "
            f"All figures: `{COMPARISON_JSON}` in the new run."
        )
    )
    return blocks


def markdown(doc: ComparisonDoc) -> str:
    return to_markdown(comparison_blocks(doc))


def junit_xml(doc: ComparisonDoc) -> str:
    """JUnit XML: one test suite per target, one test case per figure; a regression is a
    failure, an inconclusive figure is skipped (with why), the rest pass."""
    root = ET.Element("testsuites", name="quantbench compare")
    total = failures = skipped = 0
    for target, rows in doc.table.groupby("target", sort=False):
        suite = ET.SubElement(root, "testsuite", name=f"quantbench compare: {target}")
        t_fail = t_skip = 0
        for row in rows.to_dict("records"):
            case = ET.SubElement(
                suite,
                "testcase",
                classname=f"quantbench.compare.{target}",
                name=f"{where_text(row)}: {row['label']}",
            )
            text = (
                f"{row['label']} {change_text(row)} (threshold {_threshold_text(row)}): "
                f"{row['reason']}; base {_figure(row['base'], row['unit'])}, "
                f"new {_figure(row['new'], row['unit'])}"
            )
            if row["verdict"] == "regressed":
                ET.SubElement(case, "failure", message=f"regressed: {text}", type="regression")
                t_fail += 1
            elif row["verdict"] == "inconclusive":
                ET.SubElement(case, "skipped", message=f"inconclusive: {text}")
                t_skip += 1
            else:
                ET.SubElement(case, "system-out").text = f"{row['verdict']}: {text}"
        suite.set("tests", str(len(rows)))
        suite.set("failures", str(t_fail))
        suite.set("skipped", str(t_skip))
        suite.set("errors", "0")
        total, failures, skipped = total + len(rows), failures + t_fail, skipped + t_skip
    root.set("tests", str(total))
    root.set("failures", str(failures))
    root.set("skipped", str(skipped))
    root.set("errors", "0")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
