"""Per target × stage GPU and container figures, the columns summary.csv carries beside latency.

Over each stage's measured window (after its warm-up, the window every throughput figure
uses): mean and peak power, energy, energy per output token and per request, output tokens
per joule, SM activity, GPU utilisation, memory used and the time power or heat held the
clocks back (`analysis.gpu_energy` does the integrals), and a compose target's container CPU
and memory. Inputs are gpu.jsonl and containers.jsonl, read with the torn-line rule of every
JSON-lines file; nothing is written. Energy per output token is the stage's energy over the
output tokens of its own ok requests, i.e. mean power ÷ output tok/s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.container_stages import container_changes, stage_resources
from analysis.gpu_energy import StageGpu, per_work, stage_gpu, sum_gpus
from loadtest.container_records import CONTAINERS_FILE, ContainerSample
from loadtest.gpu_records import GPU_FILE, GpuSample
from loadtest.jsonl import read_jsonl
from loadtest.records import StageRecord
from loadtest.run_meta import RunMeta

__all__ = [
    "TELEMETRY_COLUMNS",
    "TELEMETRY_COUNTS",
    "Telemetry",
    "add_telemetry_columns",
    "load_telemetry",
    "stage_figures",
    "telemetry_entry",
]

TELEMETRY_COLUMNS = [
    "gpu_source",  # simulated-dcgm, dcgm, nvml, nvidia-smi; empty: no GPU samples
    "gpu_count",
    "gpu_samples",
    "gpu_mean_power_w",
    "gpu_peak_power_w",
    "gpu_energy_j",
    "gpu_energy_method",  # counter (the driver's energy counter) or integral (of power)
    "gpu_j_per_output_token",
    "gpu_j_per_request",
    "gpu_output_tokens_per_j",
    "gpu_sm_active",  # DCGM's SM activity ratio, 0-1
    "gpu_util_pct",
    "gpu_memory_used_mib",  # peak
    "gpu_throttled_s",
    "gpu_throttled",  # power or heat held the clocks back: flagged, not invalid
    "container_cpu_cores",
    "container_memory_mib",
    "container_memory_peak_mib",
]
TELEMETRY_COUNTS = ("gpu_count", "gpu_samples")  # whole numbers: summary.csv writes integers
_TEXT_COLUMNS = frozenset({"gpu_source", "gpu_energy_method", "gpu_throttled"})
_MIB = 1024 * 1024


@dataclass(frozen=True)
class Telemetry:
    """A run's GPU and container samples, and each target's GPU source (run.json)."""

    gpu: list[GpuSample] = field(default_factory=list)
    containers: list[ContainerSample] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # damaged lines skipped, one per file

    def container_changes(self, stages: Sequence[StageRecord]) -> dict[tuple[str, int], str]:
        """(target, stage) → what happened to its container, for the validity verdict."""
        return container_changes(self.containers, stages)


def load_telemetry(run_dir: Path, meta: RunMeta) -> Telemetry:
    """Read gpu.jsonl and containers.jsonl (absent files read as empty; nothing written)."""
    gpu = read_jsonl(run_dir / GPU_FILE, GpuSample.model_validate_json)
    containers = read_jsonl(run_dir / CONTAINERS_FILE, ContainerSample.model_validate_json)
    sources = {t.name: t.telemetry.source for t in meta.targets if t.telemetry is not None}
    problems = [note for note in (gpu.note(), containers.note()) if note]
    return Telemetry(gpu.rows, containers.rows, sources, problems)


def _samples_of(samples: list[GpuSample], target: str) -> list[GpuSample]:
    """A target's samples; a gpu.jsonl of the standalone sampler (no target) serves all."""
    mine = [s for s in samples if s.target == target]
    return mine or [s for s in samples if s.target is None]


def _gpu_figures(samples: list[GpuSample], start: float, end: float) -> StageGpu | None:
    if not samples or end <= start:
        return None
    gpus = sorted({s.gpu for s in samples})
    figures = [stage_gpu(samples, start, end, gpu) for gpu in gpus]
    return figures[0] if len(figures) == 1 else sum_gpus(figures)


def _source(samples: list[GpuSample], recorded: str | None) -> str:
    if recorded and recorded != "none":
        return recorded
    if not samples:
        return ""
    first = samples[0]
    return f"simulated-{first.source}" if first.simulated else first.source


def _row(
    stage: StageRecord,
    summary_row: dict[str, Any] | None,
    samples: list[GpuSample],
    containers: list[ContainerSample],
    source: str,
) -> dict[str, Any]:
    start, end = stage.start_wall_s + stage.warmup_s, stage.end_wall_s
    row: dict[str, Any] = dict.fromkeys(TELEMETRY_COLUMNS)
    row.update(target=stage.target, stage=stage.stage, gpu_source=source)
    figures = _gpu_figures(samples, start, end)
    if figures is not None and figures.energy_j is not None:
        tokens = int((summary_row or {}).get("output_tokens") or 0)
        ok = int((summary_row or {}).get("ok") or 0)
        work = per_work(figures, tokens, ok)
        throttled = figures.throttled_s
        row.update(
            gpu_count=len(figures.gpus),
            gpu_samples=figures.samples,
            gpu_mean_power_w=figures.mean_power_w,
            gpu_peak_power_w=figures.peak_power_w,
            gpu_energy_j=figures.energy_j,
            gpu_energy_method=figures.energy_method,
            gpu_j_per_output_token=work.energy_per_output_token_j,
            gpu_j_per_request=work.energy_per_request_j,
            gpu_output_tokens_per_j=work.output_tokens_per_j,
            gpu_sm_active=figures.mean_sm_active,
            gpu_util_pct=figures.mean_gpu_util_pct,
            gpu_memory_used_mib=figures.peak_memory_used_mib,
            gpu_throttled_s=throttled,
            gpu_throttled=None if throttled is None else bool(throttled > 0),
        )
    if containers:
        used = stage_resources(containers, start, end)
        row.update(
            container_cpu_cores=used.cpu_cores_mean,
            container_memory_mib=None
            if used.memory_mean_bytes is None
            else used.memory_mean_bytes / _MIB,
            container_memory_peak_mib=None
            if used.memory_peak_bytes is None
            else used.memory_peak_bytes / _MIB,
        )
    return row


def stage_figures(
    telemetry: Telemetry, stages: Sequence[StageRecord], summary: pd.DataFrame
) -> pd.DataFrame:
    """One row per stage (`target`, `stage`, then TELEMETRY_COLUMNS); `summary` gives each
    stage's output tokens and ok requests for the per-work figures."""
    rows_by_stage = (
        {(str(r["target"]), int(r["stage"])): r for r in summary.to_dict("records")}
        if len(summary)
        else {}
    )
    by_target: dict[str, list[ContainerSample]] = {}
    for sample in telemetry.containers:
        if sample.error is None:
            by_target.setdefault(sample.target, []).append(sample)
    rows = []
    for stage in stages:
        samples = _samples_of(telemetry.gpu, stage.target)
        source = _source(samples, telemetry.sources.get(stage.target))
        summary_row = rows_by_stage.get((stage.target, stage.stage))
        containers = by_target.get(stage.target, [])
        rows.append(_row(stage, summary_row, samples, containers, source))
    return pd.DataFrame(rows, columns=["target", "stage", *TELEMETRY_COLUMNS])


def add_telemetry_columns(
    summary: pd.DataFrame, telemetry: Telemetry, stages: Sequence[StageRecord]
) -> pd.DataFrame:
    """summary.csv's rows with TELEMETRY_COLUMNS appended (empty where nothing was sampled),
    in the summary's own order."""
    out = summary.copy()
    if out.empty:
        for column in TELEMETRY_COLUMNS:
            out[column] = pd.Series(dtype=object)
        return out
    figures = stage_figures(telemetry, stages, summary).set_index(["target", "stage"])
    index = pd.MultiIndex.from_arrays([out["target"].astype(str), out["stage"].astype(int)])
    aligned = figures.reindex(index)
    for column in TELEMETRY_COLUMNS:
        values = aligned[column].to_numpy()
        if column in _TEXT_COLUMNS:
            out[column] = [None if pd.isna(v) else v for v in values]
        else:
            out[column] = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(float)
    out["gpu_source"] = out["gpu_source"].fillna("")
    return out


def telemetry_entry(row: dict[str, Any]) -> dict[str, Any] | None:
    """A summary row's GPU and container figures for result.json (`gpu_` dropped from the
    names), or None where nothing was sampled."""
    if not row.get("gpu_source") and pd.isna(row.get("container_memory_mib")):
        return None
    entry = {}
    for column in TELEMETRY_COLUMNS:
        value = row.get(column)
        if value is not None and not isinstance(value, str | bool) and pd.isna(value):
            value = None
        entry[column.removeprefix("gpu_")] = value
    return entry
