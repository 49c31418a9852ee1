"""The GPU chart (rendering only): mean power and energy per output token against load, per
target, in the look every other chart gives it (analysis/plots.py); a throttled stage is
ringed in red, an invalid one dotted, and simulated figures say so in the title and legend.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from analysis.gpu_report import has_gpu_figures
from analysis.plots import _legend, _save, _styles, _unit

__all__ = ["GPU_PLOT_FILE", "energy_figure", "write_gpu_plot"]

GPU_PLOT_FILE = "gpu_energy.png"
_PANELS = (
    ("gpu_mean_power_w", "mean GPU power (W)"),
    ("gpu_j_per_output_token", "GPU energy per output token (J)"),
)


def energy_figure(summary: pd.DataFrame, title: str) -> Figure:
    """`summary`: one row per target × load (`repeats.by_load`)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8), layout="constrained")
    styles = _styles(summary)
    for target, rows in summary.groupby("target", sort=False):
        style = styles[str(target)]
        rows = rows.sort_values("load")
        for ax, (column, _) in zip(axes, _PANELS, strict=True):
            points = rows[pd.to_numeric(rows[column], errors="coerce").notna()]
            ax.plot(points["load"], points[column].astype(float), **style.line_kwargs())
            hot = points[pd.to_numeric(points["gpu_throttled_s"], errors="coerce").fillna(0) > 0]
            ax.scatter(hot["load"], hot[column].astype(float), s=220, facecolors="none",
                       edgecolors="#b00", linewidths=1.5, zorder=5)  # fmt: skip
            invalid = points[~points["valid"].astype(bool)]
            ax.scatter(invalid["load"], invalid[column].astype(float), s=200, facecolors="none",
                       edgecolors=style.color, linewidths=1.2, linestyle=":")  # fmt: skip
    limits = pd.to_numeric(summary.get("gpu_peak_power_w"), errors="coerce")
    for ax, (_, ylabel) in zip(axes, _PANELS, strict=True):
        ax.set_xlabel(_unit(summary))
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0)
        ax.set_xlim(left=0)
    if limits is not None and limits.notna().any():
        axes[0].set_ylim(0, max(float(limits.max()) * 1.1, axes[0].get_ylim()[1]))
    _legend(fig, list(axes))
    fig.suptitle(
        f"{title}\nred ring = GPU throttled (power or heat); dotted ring = invalid stage",
        fontsize=10,
    )
    return fig


def write_gpu_plot(summary: pd.DataFrame, plots_dir: Path) -> dict[str, Path]:
    """The chart as plots/gpu_energy.png, keyed by its title; nothing without GPU figures."""
    path = plots_dir / GPU_PLOT_FILE
    if not has_gpu_figures(summary):
        path.unlink(missing_ok=True)  # a chart of an earlier analysis of this run
        return {}
    simulated = summary["gpu_source"].astype(str).str.startswith("simulated").any()
    title = "GPU power and energy per output token" + (" — simulated" if simulated else "")
    plots_dir.mkdir(parents=True, exist_ok=True)
    return {title: _save(energy_figure(summary, title), path)}
