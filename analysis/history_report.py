"""What `quantbench history` writes (rendering only): history.csv, one trend chart per
target × stage, and history.html (self-contained, the charts embedded) with the findings
first, then each target × stage's trend table and chart.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from analysis.document import Block, Bullets, Heading, Image, Paragraph, Table, to_html
from analysis.regression_report import where_text
from analysis.rundir import write_text_atomic

__all__ = ["HISTORY_CSV", "HISTORY_HTML", "findings", "write_history"]

HISTORY_CSV = "history.csv"
HISTORY_HTML = "history.html"
_DPI = 100


def _change(row: dict[str, Any]) -> str:
    value = row.get("level_change")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if row["metric"] == "error_rate":
        return f"{100 * value:+.2f} pt"
    return f"{100 * value:+.1f}%"


def findings(table: pd.DataFrame) -> list[str]:
    """One line per change point and per suspect night, in night order."""
    marked = table[table["change_point"] | table["suspect"]].sort_values("night", kind="stable")
    lines = []
    for row in marked.to_dict("records"):
        where = f"{row['target']} {where_text(row)} {row['label']}"
        if row["change_point"]:
            lines.append(
                f"night {row['night']} ({row['run']}): {where} changed level, {_change(row)}"
            )
        else:
            lines.append(f"night {row['night']} ({row['run']}): {where} suspect, {_value(row)}")
    return lines


def _value(row: dict[str, Any]) -> str:
    value = row.get("value")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "invalid"
    if row["unit"] == "%":
        return f"{100 * value:.2f}%"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def _chart(rows: pd.DataFrame, title: str, path: Path) -> Path:
    """Small multiples, one per metric: value by night, change points as dashed lines,
    suspect nights circled in red."""
    metrics = list(dict.fromkeys(rows["metric"]))
    columns = 3
    lines = math.ceil(len(metrics) / columns)
    fig, axes = plt.subplots(lines, columns, figsize=(12, 2.6 * lines), squeeze=False)
    for ax, metric in zip(axes.flat, metrics, strict=False):
        mine = rows[rows["metric"] == metric]
        values = pd.to_numeric(mine["value"], errors="coerce")
        scale = 100.0 if str(mine["unit"].iloc[0]) == "%" else 1.0
        ax.plot(mine["night"], values * scale, marker="o", markersize=3, color="#1f77b4")
        for night in mine[mine["change_point"]]["night"]:
            ax.axvline(night - 0.5, color="#d62728", linestyle="--", linewidth=1)
        odd = mine[mine["suspect"]]
        ax.scatter(
            odd["night"],
            pd.to_numeric(odd["value"]) * scale,
            s=80,
            facecolors="none",
            edgecolors="#d62728",
        )
        ax.set_title(f"{mine['label'].iloc[0]} ({mine['unit'].iloc[0]})", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.set_xlabel("night", fontsize=8)
    for ax in list(axes.flat)[len(metrics) :]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)
    return path


def _trend_table(rows: pd.DataFrame) -> Table:
    metrics = list(dict.fromkeys(rows["metric"]))
    labels = dict(zip(rows["metric"], rows["label"], strict=False))
    headers = ["night", "run", *(labels[m] for m in metrics)]
    cells = []
    for night, group in rows.groupby("night", sort=True):
        by_metric = {r["metric"]: r for r in group.to_dict("records")}
        line = [str(night), str(group["run"].iloc[0])]
        for metric in metrics:
            row = by_metric.get(metric)
            text = _value(row) if row is not None else ""
            if row is not None and row["change_point"]:
                arrow = "▲" if (row.get("level_change") or 0) > 0 else "▼"
                text = f"**{text}** {arrow} {_change(row)}"
            elif row is not None and row["suspect"]:
                text = f"*{text}* (suspect)"
            line.append(text)
        cells.append(line)
    return Table(headers, cells)


def write_history(table: pd.DataFrame, out: Path) -> tuple[Path, Path]:
    """history.csv, the charts (out/history_plots/) and history.html; returns csv, html."""
    out.mkdir(parents=True, exist_ok=True)
    csv = out / HISTORY_CSV
    write_text_atomic(csv, table.to_csv(index=False, float_format="%.6g"))
    plots = out / "history_plots"
    plots.mkdir(exist_ok=True)
    simulated = bool(table["simulated"].any()) if len(table) else False
    tag = " (simulated)" if simulated else ""
    nights = int(table["night"].max()) if len(table) else 0
    found = findings(table)
    blocks: list[Block] = [
        Heading(f"quantbench history — {nights} nights{tag}", 1),
        Bullets(found or ["no change point and no suspect night"]),
        Paragraph(
            "A change point (dashed line, ▲ up or ▼ down) is the first night of a new "
            "level: a shift in the mean that the PELT search finds beyond the night-to-night "
            "noise and that is at least the metric's regression threshold. A suspect night "
            "(circled) lies far from the median of the nights before it on the same level."
        ),
    ]
    if simulated:
        blocks.append(Paragraph("*simulated*: figures from simulated stacks, not from a GPU."))
    keys = table[["target", "stage"]].drop_duplicates(keep="first")
    for target, stage in keys.itertuples(index=False):
        rows = table[
            (table["target"] == target)
            & (table["stage"].isna() if pd.isna(stage) else (table["stage"] == stage))
        ]
        first = rows.iloc[0].to_dict()
        title = f"{target} — {where_text(first)}{tag}"
        path = _chart(rows, title, plots / f"{_slug(f'{target}-{where_text(first)}')}.png")
        blocks += [Heading(title), _trend_table(rows), Image(title, path)]
    html = out / HISTORY_HTML
    write_text_atomic(
        html, to_html(blocks[0].text if isinstance(blocks[0], Heading) else "history", blocks)
    )
    return csv, html
