"""Rendering of report.md and a self-contained report.html from computed results."""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["ReportInput", "render_html", "render_markdown"]

_TABLE = [
    ("target", "target"),
    ("load", "conc."),
    ("requests", "requests"),
    ("ok", "ok"),
    ("req_per_s", "req/s"),
    ("output_tok_per_s", "out tok/s"),
    ("ttft_p50_ms", "TTFT p50"),
    ("ttft_p95_ms", "TTFT p95"),
    ("tpot_p50_ms", "TPOT p50"),
    ("tpot_p95_ms", "TPOT p95"),
    ("itl_p95_ms", "ITL p95"),
    ("e2e_p95_ms", "E2E p95"),
    ("goodput_req_per_s", "goodput/s"),
    ("valid", "valid"),
]


@dataclass(frozen=True)
class ReportInput:
    title: str
    headline: list[str]
    summary: pd.DataFrame
    plots: dict[str, Path]
    meta: list[tuple[str, str]]


def _cell(value: Any, column: str) -> str:
    if column == "target":
        return str(value)
    if column == "valid":
        return "yes" if bool(value) else "NO"
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.1f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def _label(row: pd.Series) -> str:
    tag = " *(simulated)*" if bool(row["simulated"]) else ""
    return f"{row['target']} ({row['stack']} {row['quant']}){tag}"


def _rows(summary: pd.DataFrame) -> list[list[str]]:
    rows = []
    for _, row in summary.iterrows():
        cells = [_cell(row[column], column) for column, _ in _TABLE]
        cells[0] = _label(row)
        rows.append(cells)
    return rows


def _invalid(summary: pd.DataFrame) -> list[tuple[str, str]]:
    bad = summary[~summary["valid"].astype(bool)]
    return [(f"{r['target']} @ {r['load']:g}", str(r["invalid_reason"])) for _, r in bad.iterrows()]


def render_markdown(report: ReportInput) -> str:
    out = [f"# {report.title}", ""]
    out += [f"- {line}" for line in report.headline]
    out += ["", "## Results per target and load", ""]
    out.append("| " + " | ".join(header for _, header in _TABLE) + " |")
    out.append("|" + "---|" * len(_TABLE))
    out += ["| " + " | ".join(cells) + " |" for cells in _rows(report.summary)]
    out += [
        "",
        "Latencies in ms; percentiles from raw client records, warm-up excluded; "
        "n/a = too few samples for that percentile.",
        "",
    ]
    out += ["## Latency vs throughput", ""]
    out += [f"![{key}](plots/{path.name})" for key, path in report.plots.items()]
    out += ["", "## Stage validity", ""]
    invalid = _invalid(report.summary)
    if invalid:
        out += [f"- {stage}: {reason}" for stage, reason in invalid]
    else:
        out.append("All stages valid.")
    out += ["", "## Run", ""]
    out += [f"- {key}: {value}" for key, value in report.meta]
    return "\n".join(out) + "\n"


def _md_inline(text: str) -> str:
    escaped = html.escape(text)
    parts = escaped.split("**")
    escaped = "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))
    parts = escaped.split("*")
    return "".join(f"<i>{p}</i>" if i % 2 else p for i, p in enumerate(parts))


_STYLE = """
body{font-family:system-ui,sans-serif;margin:1rem auto;max-width:72rem;padding:0 .8rem;color:#222}
table{border-collapse:collapse;font-size:.85rem;display:block;overflow-x:auto}
th,td{border:1px solid #ccc;padding:.25rem .45rem;text-align:right;white-space:nowrap}
td:first-child,th:first-child{text-align:left}
img{max-width:100%;height:auto}
.bad{color:#b00;font-weight:bold}
"""


def render_html(report: ReportInput) -> str:
    """One self-contained page: styles inline, plots embedded as data URIs; opens offline."""
    out = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width,initial-scale=1'>",
        f"<title>{html.escape(report.title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(report.title)}</h1><ul>",
    ]
    out += [f"<li>{_md_inline(line)}</li>" for line in report.headline]
    out.append("</ul><h2>Results per target and load</h2><table><tr>")
    out += [f"<th>{html.escape(header)}</th>" for _, header in _TABLE]
    out.append("</tr>")
    for cells in _rows(report.summary):
        tds = "".join(
            f"<td class='bad'>{c}</td>" if c == "NO" else f"<td>{_md_inline(c)}</td>" for c in cells
        )
        out.append(f"<tr>{tds}</tr>")
    out.append(
        "</table><p>Latencies in ms; percentiles from raw client records, warm-up "
        "excluded; n/a = too few samples for that percentile.</p>"
    )
    out.append("<h2>Latency vs throughput</h2>")
    for key, path in report.plots.items():
        data = base64.b64encode(path.read_bytes()).decode()
        out.append(f"<p><img alt='{html.escape(key)}' src='data:image/png;base64,{data}'></p>")
    out.append("<h2>Stage validity</h2><ul>")
    invalid = _invalid(report.summary)
    out += [f"<li>{html.escape(s)}: {html.escape(r)}</li>" for s, r in invalid] or [
        "<li>All stages valid.</li>"
    ]
    out.append("</ul><h2>Run</h2><ul>")
    out += [f"<li>{html.escape(k)}: {html.escape(v)}</li>" for k, v in report.meta]
    out.append("</ul></body></html>")
    return "\n".join(out) + "\n"
