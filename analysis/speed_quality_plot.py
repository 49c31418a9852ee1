"""The speed–quality chart (rendering only): each target's perplexity change against FP16, with
its 95% interval, against the highest request rate it serves within the SLO per GPU.

Points are coloured by their verdict under the accuracy bar (drawn as a dashed line); a target
without a change against FP16 is drawn on a strip under the plot, marked *not measurable*,
never on the zero line; one never within the SLO sits at zero req/s, marked so. The target
the bar's decision chooses is ringed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from analysis.plots import limit_line
from analysis.speed_quality import SpeedQuality

__all__ = ["CHART_FILE", "speed_quality_figure", "write_speed_quality_chart"]

CHART_FILE = "speed_quality.png"
_COLORS = {
    "meets": "#1a7f37",
    "reference": "#0550ae",
    "misses": "#cf222e",
    "uncertain": "#bf8700",
    None: "#57606a",  # no bar given
}
_DPI = 100


def _label(
    ax: Axes,
    x: float,
    right: float,
    text: str,
    at: tuple[float, float],
    color: str,
    transform: Any = None,
) -> None:
    """A point's label, on its right, or on its left in the right half (so it stays inside)."""
    left = x > right / 2
    ax.annotate(text, at, xycoords=transform or "data", xytext=(-9 if left else 9, 4),
                textcoords="offset points", ha="right" if left else "left", fontsize=8,
                color=color)  # fmt: skip


def speed_quality_figure(view: SpeedQuality, title: str) -> Figure:
    """One point per target (see the module docstring); the chosen target is ringed."""
    fig, ax = plt.subplots(figsize=(8.5, 5.4), layout="constrained")
    rates = [t.max_rps for t in view.targets if t.max_rps is not None]
    right = max(rates, default=1.0) * 1.25 or 1.0
    missing = []
    choice = view.decision.choice if view.decision is not None else None
    for t in view.targets:
        x = t.max_rps if t.max_rps is not None else 0.0
        rate = t.capacity.text("req_per_s", "req/s", note=False) if t.capacity else "?"
        where = rate if t.max_rps is not None else "never within the SLO"
        if t.reference:
            y, low, high = 0.0, 0.0, 0.0
        elif t.delta is None:
            missing.append((t, x, where))
            continue
        else:
            y = 100 * t.delta.value
            low = 100 * t.delta.ci_low if t.delta.ci_low is not None else y
            high = 100 * t.delta.ci_high if t.delta.ci_high is not None else y
        verdict = t.verdict(view.bar)[0] if view.bar is not None else None
        color = _COLORS["reference" if t.reference else verdict]
        ax.errorbar([x], [y], yerr=[[y - low], [high - y]], fmt="o", color=color,
                    markersize=8, capsize=5, linewidth=1.6)  # fmt: skip
        label = t.target + (" (FP16 reference)" if t.reference else "")
        label += f": {verdict}; {where}" if verdict not in (None, "reference") else f": {where}"
        if t.target == choice:
            ax.plot([x], [y], marker="o", markersize=17, markerfacecolor="none",
                    markeredgecolor=color, markeredgewidth=1.5)  # fmt: skip
            label += " ← chosen"
        _label(ax, x, right, label, (x, y), color)
    for k, (t, x, where) in enumerate(missing):
        at = (x, 0.04 + 0.06 * k)
        transform = ax.get_xaxis_transform()
        ax.plot(*at, marker="x", color=_COLORS[None], markersize=9, transform=transform,
                clip_on=False)  # fmt: skip
        _label(ax, x, right, f"{t.target}: not measurable; {where}", at, _COLORS[None],
               transform)  # fmt: skip
    if view.bar is not None:
        limit_line(ax, 100 * view.bar, f"accuracy bar +{view.bar:.2%}", _COLORS["misses"])
    ax.axhline(0, color="#8c959f", linewidth=0.8, zorder=0)
    ax.set_xlim(left=0, right=right)
    low_y, high_y = ax.get_ylim()
    ax.set_ylim(min(low_y, -0.5), max(high_y, 100 * (view.bar or 0) * 1.2, 1.0))
    ax.set_xlabel(f"highest request rate within the SLO per GPU (req/s; {view.slo or 'no SLO'})")
    ax.set_ylabel("perplexity change vs FP16 (%), 95% CI")
    ax.grid(True, alpha=0.3)
    window = view.text or {}
    text = (
        f"window {window.get('window', '?')}, stride {window.get('stride', '?')}, "
        f"{window.get('scored_tokens', '?')} scored tokens"
    )
    fig.suptitle(
        f"{title}\n{text}; colour = verdict under the bar; ≥ = met the SLO at every tested load",
        fontsize=10,
    )
    return fig


def write_speed_quality_chart(view: SpeedQuality, plots_dir: Path) -> tuple[str, Path] | None:
    """The chart as a PNG: (its title, the report's alt text; its path); None without any
    quality data to draw."""
    if view.note is not None and not any(t.delta is not None for t in view.targets):
        return None
    plots_dir.mkdir(parents=True, exist_ok=True)
    suffix = " — simulated" if view.simulated else ""
    title = f"Speed and quality: perplexity change vs FP16 against load within the SLO{suffix}"
    fig = speed_quality_figure(view, title)
    path = plots_dir / CHART_FILE
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)
    return title, path
