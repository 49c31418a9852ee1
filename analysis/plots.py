"""Charts (rendering only; every figure arrives computed): latency against throughput with the
SLO drawn, throughput against load, latency CDFs per load, and the run over time.

Each target keeps one colour, marker and line style on every chart, markers shrink from the
first target to the last so points that coincide stay visible, legends sit below the plots so
nothing (the SLO labels included) hides under them, and every simulated target is labelled
*simulated* in legends and titles.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from analysis.capacity import Capacity, load_unit
from analysis.config import Objective, SloConfig
from analysis.timeline import Timeline

__all__ = [
    "cdf_figure",
    "latency_throughput_figure",
    "limit_line",
    "throughput_load_figure",
    "timeline_figure",
    "write_plots",
]

_DPI = 100
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")
_LINES = ("-", "--", "-.", ":")
_WARMUP = "#999999"


@dataclass(frozen=True)
class _Style:
    color: str
    marker: str
    line: str
    size: float  # marker size: the first target's largest, so later ones sit inside it
    width: float  # line width, likewise: a line drawn over another leaves it visible
    label: str

    def line_kwargs(self) -> dict[str, object]:
        return {
            "color": self.color,
            "marker": self.marker,
            "markersize": self.size,
            "markerfacecolor": "none" if self.size > 6 else self.color,
            "linestyle": self.line,
            "linewidth": self.width,
            "label": self.label,
        }


def _styles(summary: pd.DataFrame) -> dict[str, _Style]:
    """One look per target, in run order (shared by every chart)."""
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    firsts = summary.drop_duplicates("target") if len(summary) else summary
    out = {}
    for i, r in enumerate(firsts.itertuples()):
        tag = " (simulated)" if bool(r.simulated) else ""
        out[str(r.target)] = _Style(
            colors[i % len(colors)],
            _MARKERS[i % len(_MARKERS)],
            _LINES[i % len(_LINES)],
            max(10.0 - 1.3 * i, 4.0),
            max(3.2 - 0.5 * i, 1.0),
            f"{r.target} [{r.stack} {r.quant}]{tag}",
        )
    return out


def _unit(summary: pd.DataFrame) -> str:
    modes = summary["mode"].dropna().unique() if len(summary) else []
    return load_unit(str(modes[0])) if len(modes) == 1 else "load"


def _legend(fig: Figure, axes: list[Axes]) -> None:
    """One legend for the figure, below the plots."""
    handles, labels = axes[0].get_legend_handles_labels()
    seen = dict(zip(labels, handles, strict=True))
    if seen:
        fig.legend(
            list(seen.values()),
            list(seen),
            loc="outside lower center",
            ncol=min(len(seen), 3),
            fontsize=8,
            frameon=False,
        )


def limit_line(ax: Axes, y: float, text: str, color: str = "#b00") -> None:
    """A limit as a dashed horizontal line, labelled at its right end, inside the axes."""
    ax.axhline(y, color=color, linestyle="--", linewidth=1.2, zorder=0)
    ax.annotate(
        text,
        (1, y),
        xycoords=("axes fraction", "data"),
        xytext=(-4, 3),
        textcoords="offset points",
        ha="right",
        fontsize=8,
        color=color,
    )


def _slo_line(ax: Axes, limit: float | None, label: str = "SLO") -> None:
    if limit is not None:
        limit_line(ax, limit, f"{label} {limit:g} ms")


def _panels(slo: SloConfig | None) -> list[tuple[str, str, float | None]]:
    """(summary column, axis label, SLO limit) per latency panel: the SLO's objectives, or
    p95 TTFT and TPOT when it sets none."""
    objectives = slo.objectives() if slo is not None else []
    if not objectives:
        objectives = [Objective("ttft", 95.0, 0.0), Objective("tpot", 95.0, 0.0)]
    return [
        (o.column, f"{o.label} (ms)", o.limit_ms if slo is not None and o.limit_ms else None)
        for o in objectives
    ]


def latency_throughput_figure(
    summary: pd.DataFrame, title: str, slo: SloConfig | None = None
) -> Figure:
    """Each SLO latency against output tokens/s, one line per target, points = loads
    (open circle: invalid stage, left out of the verdict)."""
    panels = _panels(slo)
    fig, axes = plt.subplots(
        1, len(panels), figsize=(5.5 * len(panels), 4.8), layout="constrained", squeeze=False
    )
    styles = _styles(summary)
    for target, rows in summary.groupby("target", sort=False):
        style = styles[str(target)]
        rows = rows.sort_values("load")
        for ax, (column, _, _) in zip(axes[0], panels, strict=True):
            points = rows.dropna(subset=[column])
            ax.plot(points["output_tok_per_s"], points[column], **style.line_kwargs())
            invalid = points[~points["valid"].astype(bool)]
            ax.scatter(
                invalid["output_tok_per_s"],
                invalid[column],
                s=200,
                facecolors="none",
                edgecolors=style.color,
                linewidths=1.2,
                linestyle=":",
            )
            for r in points.itertuples():
                ax.annotate(
                    f"{r.load:g}",
                    (r.output_tok_per_s, getattr(r, column)),
                    textcoords="offset points",
                    xytext=(5, -9),
                    fontsize=7,
                    color=style.color,
                )
    for ax, (_, ylabel, limit) in zip(axes[0], panels, strict=True):
        _slo_line(ax, limit)
        ax.set_xlabel("output tokens/s")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0)
        ax.set_xlim(left=0)
    _legend(fig, list(axes[0]))
    fig.suptitle(
        f"{title}\npoint labels = {_unit(summary)}; dotted ring = invalid stage; dashed red = SLO",
        fontsize=10,
    )
    return fig


def throughput_load_figure(
    summary: pd.DataFrame, title: str, capacity: dict[str, Capacity] | None = None
) -> Figure:
    """Output tok/s and req/s against offered load; a star marks each target's SLO limit."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8), layout="constrained")
    panels = (("output_tok_per_s", "output tokens/s"), ("req_per_s", "completed requests/s"))
    styles = _styles(summary)
    for target, rows in summary.groupby("target", sort=False):
        style = styles[str(target)]
        rows = rows.sort_values("load")
        for ax, (column, _) in zip(axes, panels, strict=True):
            ax.plot(rows["load"], rows[column], **style.line_kwargs())
            cap = (capacity or {}).get(str(target))
            value = getattr(cap, column) if cap is not None and cap.sustains else None
            if cap is not None and cap.load is not None and value is not None:
                ax.scatter([cap.load], [value], marker="*", s=180, color=style.color, zorder=5)
    for ax, (_, ylabel) in zip(axes, panels, strict=True):
        ax.set_xlabel(_unit(summary))
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0)
        ax.set_xlim(left=0)
    _legend(fig, list(axes))
    fig.suptitle(f"{title}\n★ = highest load within the SLO", fontsize=10)
    return fig


def cdf_figure(
    cdfs: pd.DataFrame,
    summary: pd.DataFrame,
    title: str,
    slo: SloConfig | None = None,
    max_loads: int = 4,
) -> Figure:
    """Latency CDFs, one column per load (up to `max_loads`, spread over the range) and one
    row per metric; dotted curves come from stages that were all invalid."""
    loads = sorted(cdfs["load"].unique()) if len(cdfs) else []
    if len(loads) > max_loads:
        picks = np.unique(np.linspace(0, len(loads) - 1, max_loads).round().astype(int))
        loads = [loads[i] for i in picks]
    metrics = list(dict.fromkeys(cdfs["metric"])) or ["ttft"]
    fig, axes = plt.subplots(
        len(metrics),
        max(len(loads), 1),
        figsize=(3.6 * max(len(loads), 1) + 1, 3.0 * len(metrics) + 1.2),
        layout="constrained",
        squeeze=False,
    )
    styles = _styles(summary)
    limits = {o.metric: o for o in (slo.objectives() if slo is not None else [])}
    unit = _unit(summary)
    for row, metric in enumerate(metrics):
        for col, load in enumerate(loads):
            ax = axes[row][col]
            here = cdfs[(cdfs["metric"] == metric) & (cdfs["load"] == load)]
            for target, curve in here.groupby("target", sort=False):
                style = styles.get(str(target))
                if style is None:
                    continue
                ax.plot(
                    curve["value_ms"],
                    curve["quantile"],
                    color=style.color,
                    linestyle=style.line if bool(curve["valid"].iloc[0]) else ":",
                    linewidth=1.6,
                    label=style.label,
                )
            objective = limits.get(metric)
            if objective is not None:
                ax.axvline(objective.limit_ms, color="#b00", linestyle="--", linewidth=1)
                ax.axhline(objective.percentile / 100, color="#b00", linewidth=0.6, alpha=0.5)
            values = here["value_ms"]
            if len(values) and values.min() > 0 and values.max() / values.min() > 30:
                ax.set_xscale("log")
            ax.set_ylim(0, 1.01)
            ax.grid(True, alpha=0.3)
            ax.set_title(f"{metric.upper()} at {load_unit(str(summary['mode'].iloc[0]), load)}"
                         if unit != "load" else f"{metric.upper()} at load {load:g}",
                         fontsize=9)  # fmt: skip
            ax.set_xlabel(f"{metric.upper()} (ms)", fontsize=8)
            if col == 0:
                ax.set_ylabel("fraction of requests ≤ x", fontsize=8)
    _legend(fig, [axes[0][0]])
    fig.suptitle(
        f"{title}\nok requests of each stage (warm-up excluded); dashed red = SLO limit and "
        "its percentile; dotted = invalid stage",
        fontsize=10,
    )
    return fig


def _shade_stages(ax: Axes, line: Timeline) -> None:
    for r in line.stages.itertuples():
        ax.axvspan(r.start_s, r.measure_s, color=_WARMUP, alpha=0.18, linewidth=0)
        ax.axvline(r.start_s, color=_WARMUP, linewidth=0.5, alpha=0.6)


def timeline_figure(line: Timeline, summary: pd.DataFrame, title: str) -> Figure:
    """TTFT, output tokens/s, requests in flight (and the server's queue) and KV-cache use
    over the run; grey bands are warm-ups, thin lines stage starts, targets in run order."""
    fig, axes = plt.subplots(
        4, 1, figsize=(12, 10), sharex=True, layout="constrained", height_ratios=[1, 1, 1, 0.8]
    )
    styles = _styles(summary)
    bins, server = line.bins, line.server
    for target, rows in bins.groupby("target", sort=False):
        style = styles.get(str(target))
        if style is None:
            continue
        common = {"color": style.color, "linewidth": 1.2}
        axes[0].plot(rows["t_s"], rows["ttft_p50_ms"], label=style.label, **common)
        axes[1].plot(rows["t_s"], rows["output_tok_per_s"], **common)
        axes[2].plot(rows["t_s"], rows["in_flight"], **common)
    queued = kv = False
    for target, rows in server.groupby("target", sort=False):
        style = styles.get(str(target))
        if style is None:
            continue
        if rows["waiting"].notna().any():
            axes[2].plot(rows["t_s"], rows["waiting"], color=style.color, linestyle=":")
            queued = True
        if rows["kv_cache_usage"].notna().any():
            axes[3].plot(rows["t_s"], 100 * rows["kv_cache_usage"], color=style.color)
            kv = True
    for r in line.stages.drop_duplicates("target", keep="first").itertuples():
        axes[0].annotate(
            str(r.target), (r.start_s, 1), xycoords=("data", "axes fraction"),
            xytext=(2, -10), textcoords="offset points", fontsize=7,
        )  # fmt: skip
    labels = [
        "TTFT p50 per bin (ms)",
        "output tokens/s",
        "in flight (solid: client)" + ("\nqueued (dotted: server)" if queued else ""),
        "KV cache used (%)" if kv else "KV cache used (%)\nnot exported",
    ]
    for ax, label in zip(axes, labels, strict=True):
        _shade_stages(ax, line)
        ax.set_ylabel(label, fontsize=8)
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0)
    if kv:
        axes[3].set_ylim(0, 105)
    axes[-1].set_xlabel(f"seconds since the first stage started (bins of {line.bin_s:.2g} s)")
    _legend(fig, [axes[0]])
    fig.suptitle(f"{title}\ngrey bands = warm-up (excluded from every statistic)", fontsize=10)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)
    return path


def write_plots(
    summary: pd.DataFrame,
    plots_dir: Path,
    slo: SloConfig | None = None,
    capacity: dict[str, Capacity] | None = None,
    cdfs: pd.DataFrame | None = None,
    line: Timeline | None = None,
) -> dict[str, Path]:
    """Every chart as a PNG; keys are the charts' titles (the report's alt texts).

    `summary` is one row per target × load (`repeats.by_load`)."""
    plots_dir.mkdir(parents=True, exist_ok=True)
    for old in plots_dir.glob("target-*-latency_throughput.png"):
        old.unlink()  # per-target charts of older versions: the CDFs replace them
    if summary.empty:
        return {}
    suffix = " — simulated" if bool(summary["simulated"].any()) else ""
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
    if cdfs is not None and len(cdfs):
        title = f"Latency distributions (CDF) per load{suffix}"
        paths[title] = _save(cdf_figure(cdfs, summary, title, slo), plots_dir / "latency_cdf.png")
    if line is not None and not line.empty:
        title = f"The run over time{suffix}"
        paths[title] = _save(timeline_figure(line, summary, title), plots_dir / "timeline.png")
    return paths
