"""Latency–throughput charts from summary rows (rendering only; no statistics here)."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

__all__ = ["latency_throughput_figure", "write_plots"]

_PANELS = (("ttft_p95_ms", "p95 TTFT (ms)"), ("tpot_p95_ms", "p95 TPOT (ms)"))


def _label(target: str, rows: pd.DataFrame) -> str:
    first = rows.iloc[0]
    tag = " (simulated)" if bool(first["simulated"]) else ""
    return f"{target} [{first['stack']} {first['quant']}]{tag}"


def latency_throughput_figure(summary: pd.DataFrame, title: str) -> Figure:
    """p95 TTFT and p95 TPOT against output tokens/s, one line per target, points = stages."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for target, rows in summary.groupby("target", sort=False):
        rows = rows.sort_values("load")
        for ax, (column, _) in zip(axes, _PANELS, strict=True):
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
    for ax, (_, ylabel) in zip(axes, _PANELS, strict=True):
        ax.set_xlabel("output tokens/s")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0)
        ax.set_xlim(left=0)
    axes[0].legend(fontsize=7, loc="upper left")
    fig.suptitle(f"{title}\npoint labels = concurrency; open circle = invalid stage", fontsize=10)
    return fig


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def write_plots(summary: pd.DataFrame, plots_dir: Path) -> dict[str, Path]:
    """Write the all-targets chart and one chart per target; keys are "all" and target names."""
    plots_dir.mkdir(parents=True, exist_ok=True)
    simulated = bool(summary["simulated"].any()) if len(summary) else False
    suffix = " — simulated" if simulated else ""
    paths: dict[str, Path] = {}
    charts = [("all", summary, f"Latency vs throughput, all targets{suffix}")]
    for target, rows in summary.groupby("target", sort=False):
        tag = " — simulated" if bool(rows["simulated"].any()) else ""
        charts.append((str(target), rows, f"Latency vs throughput: {target}{tag}"))
    for key, rows, title in charts:
        if rows.empty:
            continue
        fig = latency_throughput_figure(rows, title)
        path = plots_dir / f"latency_throughput_{_slug(key)}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths[key] = path
    return paths
