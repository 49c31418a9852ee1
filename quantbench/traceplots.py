"""Plots of a trace for `quantbench trace describe` (rendering only: numbers come from
`loadtest.traces.stats`): token lengths, input against output, and the arrival rate."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LogNorm

from loadtest.traces.stats import TraceDescription

__all__ = ["write_trace_plots"]

_DPI = 100


def _log_bins(values: np.ndarray) -> np.ndarray:
    """About 50 log-spaced whole-token bins from the smallest value to the largest."""
    low, top = max(int(values.min()), 1), max(int(values.max()), 1)
    return np.unique(np.geomspace(low, top + 1, 50).round())


def _lengths(description: TraceDescription, path: Path) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), constrained_layout=True)
    for ax, values, name in zip(
        axes,
        (description.input_tokens, description.output_tokens),
        ("input (prompt) tokens", "output tokens"),
        strict=True,
    ):
        ax.hist(np.maximum(values, 1), bins=_log_bins(values), color="#4477aa")
        ax.set_xscale("log")
        ax.set_xlabel(name)
        ax.set_ylabel("requests")
    fig.suptitle(f"Token lengths — {Path(description.summary.source).name}")
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)
    return path


def _joint(description: TraceDescription, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(5.6, 4.6), constrained_layout=True)
    inputs = np.maximum(description.input_tokens, 1)
    outputs = np.maximum(description.output_tokens, 1)
    *_, image = ax.hist2d(
        inputs,
        outputs,
        bins=[_log_bins(inputs), _log_bins(outputs)],
        norm=LogNorm(),
        cmap="viridis",
    )
    fig.colorbar(image, ax=ax, label="requests")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("input tokens")
    ax.set_ylabel("output tokens")
    rho = description.summary.input_output_spearman
    ax.set_title("Input vs output" + (f" (Spearman ρ = {rho:.2f})" if rho is not None else ""))
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)
    return path


def _arrivals(description: TraceDescription, path: Path) -> Path:
    summary = description.summary
    bucket = summary.rate_bucket_s
    times = np.arange(len(description.rate_per_s)) * bucket
    fig, ax = plt.subplots(figsize=(10, 3.6), constrained_layout=True)
    ax.step(times, description.rate_per_s, where="post", color="#4477aa", linewidth=1.2)
    ax.axhline(summary.mean_rate_per_s, color="#999", linestyle="--", linewidth=1)
    ax.set_xlabel("time into the trace (s)")
    ax.set_ylabel(f"requests/s (per {bucket:g} s)")
    cv = summary.interarrival_cv
    ax.set_title(
        f"Arrival rate: mean {summary.mean_rate_per_s:.3g}/s, peak {summary.peak_rate_per_s:.3g}/s"
        + (f", inter-arrival CV {cv:.2f}" if cv is not None else "")
    )
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)
    return path


def write_trace_plots(description: TraceDescription, out: Path) -> list[Path]:
    """lengths.png, joint.png and arrivals.png in `out` (created)."""
    out.mkdir(parents=True, exist_ok=True)
    return [
        _lengths(description, out / "lengths.png"),
        _joint(description, out / "joint.png"),
        _arrivals(description, out / "arrivals.png"),
    ]
