"""Charts from summary rows (rendering only; the figures come from `summary` and `capacity`).

Latency against throughput with the SLO drawn, and throughput against load, all targets on
one chart; every simulated target is labelled *simulated* in legends and titles.
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from analysis.capacity import Capacity, load_unit
from analysis.config import SloConfig

__all__ = ["latency_throughput_figure", "throughput_load_figure", "write_plots"]

_PANELS = (
    ("ttft_p95_ms", "p95 TTFT (ms)", "ttft_ms"),
    ("tpot_p95_ms", "p95 TPOT (ms)", "tpot_ms"),
)
_DPI = 100


def _label(target: str, rows: pd.DataFrame) -> str:
    first = rows.iloc[0]
    tag = " (simulated)" if bool(first["simulated"]) else ""
    return f"{target} [{first['stack']} {first['quant']}]{tag}"


def _unit(summary: pd.DataFrame) -> str:
    modes = summary["mode"].dropna().unique() if len(summary) else []
    return load_unit(str(modes[0])) if len(modes) == 1 else "load"


def _slo_line(ax: Axes, limit: float | None) -> None:
    if limit is None:
        return
    ax.axhline(limit, color="#b00", linestyle="--", linewidth=1.2, zorder=0)
    ax.annotate(
        f"SLO {limit:g} ms",
        (0, limit),
        xycoords=("axes fraction", "data"),
        xytext=(4, 3),
        textcoords="offset points",
        fontsize=7,
        color="#b00",
    )


def latency_throughput_figure(
    summary: pd.DataFrame, title: str, slo: SloConfig | None = None
) -> Figure:
    """p95 TTFT and p95 TPOT against output tokens/s, one line per target, points = stages."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for target, rows in summary.groupby("target", sort=False):
        rows = rows.sort_values("load")
        for ax, (column, _, _) in zip(axes, _PANELS, strict=True):
            points = rows.dropna(subset=[column])
            line = ax.plot(
                points["output_tok_per_s"],
                points[column],
                marker="o",
                label=_label(str(target), rows),
            )[0]
            invalid = points[~points["valid"].astype(bool)]
            ax.scatter(
                invalid["output_tok_per_s"],
                invalid[column],
                s=90,
                facecolors="none",
                edgecolors=line.get_color(),
                linewidths=1.5,
            )
            for _, row in points.iterrows():
                ax.annotate(
                    f"{row['load']:g}",
                    (row["output_tok_per_s"], row[column]),
                    textcoords="offset points",
                    xytext=(4, 4),
                    fontsize=7,
                )
    for ax, (_, ylabel, slo_field) in zip(axes, _PANELS, strict=True):
        _slo_line(ax, getattr(slo, slo_field) if slo is not None else None)
        ax.set_xlabel("output tokens/s")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0)
        ax.set_xlim(left=0)
    axes[0].legend(fontsize=7, loc="upper left")
    fig.suptitle(
        f"{title}\npoint labels = {_unit(summary)}; open circle = invalid stage; dashed = SLO",
        fontsize=10,
    )
    return fig


def throughput_load_figure(
    summary: pd.DataFrame, title: str, capacity: dict[str, Capacity] | None = None
) -> Figure:
    """Output tok/s and req/s against offered load; a star marks each target's SLO limit."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    panels = (("output_tok_per_s", "output tokens/s"), ("req_per_s", "completed requests/s"))
    for target, rows in summary.groupby("target", sort=False):
        rows = rows.sort_values("load")
        for ax, (column, _) in zip(axes, panels, strict=True):
            line = ax.plot(rows["load"], rows[column], marker="o", label=_label(str(target), rows))
            cap = (capacity or {}).get(str(target))
            value = getattr(cap, column) if cap is not None and cap.sustains else None
            if cap is not None and cap.load is not None and value is not None:
                ax.scatter([cap.load], [value], marker="*", s=160, color=line[0].get_color())
    for ax, (_, ylabel) in zip(axes, panels, strict=True):
        ax.set_xlabel(_unit(summary))
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0)
        ax.set_xlim(left=0)
    axes[0].legend(fontsize=7, loc="upper left")
    fig.suptitle(f"{title}\n★ = highest load within the SLO", fontsize=10)
    return fig


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)
    return path


def write_plots(
    summary: pd.DataFrame,
    plots_dir: Path,
    slo: SloConfig | None = None,
    capacity: dict[str, Capacity] | None = None,
) -> dict[str, Path]:
    """All-target charts, then one latency chart per target; keys are the charts' titles."""
    plots_dir.mkdir(parents=True, exist_ok=True)
    if summary.empty:
        return {}
    simulated = bool(summary["simulated"].any())
    suffix = " — simulated" if simulated else ""
    latency = f"Latency vs throughput, all targets{suffix}"
    throughput = f"Throughput vs load, all targets{suffix}"
    paths = {
        latency: _save(
            latency_throughput_figure(summary, latency, slo),
            plots_dir / "latency_throughput_all.png",
        ),
        throughput: _save(
            throughput_load_figure(summary, throughput, capacity),
            plots_dir / "throughput_load_all.png",
        ),
    }
    for target, rows in summary.groupby("target", sort=False):
        title = f"Latency vs throughput: {target}"
        title += " — simulated" if bool(rows["simulated"].any()) else ""
        path = plots_dir / f"target-{_slug(str(target))}-latency_throughput.png"
        paths[title] = _save(latency_throughput_figure(rows, title, slo), path)
    return paths
