"""The report's GPU section and the plan's energy table (formatting only: every figure arrives
computed by analysis/gpu_stages.py and analysis/energy_plan.py).

A throttled stage (power or heat held the clocks back) is named here, not made invalid: its
latency and energy are what that card delivered under its limits.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from analysis.capacity import load_unit
from analysis.compare import Comparison
from analysis.document import Block, Bullets, Heading, Paragraph, Table
from analysis.plan import Plan
from analysis.repeats import by_load

__all__ = ["GPU_NOTE", "energy_plan_blocks", "gpu_blocks", "has_gpu_figures"]

GPU_NOTE = (
    "Over each stage's measured window (after its warm-up). Energy is the driver's energy "
    "counter across the window when the source has one (dcgm-exporter, NVML), else the "
    "integral of the sampled power (nvidia-smi); J/out tok = that energy ÷ the output tokens "
    "of the stage's ok requests (= mean power ÷ out tok/s). Peak power is the largest sample: "
    "readings are 1 s averages on Ampere and newer except A100 (NVML), so short peaks are "
    "smoothed. Board power only (GPU and its memory), not the host or cooling. SM active is "
    "DCGM's ratio of cycles an SM had work; memory is the peak used. Throttled: the share of "
    "the window during which power or heat held the clocks back (flagged, not invalid)."
)


def _num(value: Any, digits: int = 1) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "n/a"
    if math.isnan(number):
        return "n/a"
    return f"{number:,.0f}" if abs(number) >= 1000 else f"{number:.{digits}f}"


def has_gpu_figures(summary: pd.DataFrame) -> bool:
    return "gpu_energy_j" in summary and bool(summary["gpu_energy_j"].notna().any())


def _simulated(rows: pd.DataFrame) -> bool:
    return bool(rows["gpu_source"].astype(str).str.startswith("simulated").any())


def _throttled_share(row: dict[str, Any]) -> float | None:
    seconds, duration = row.get("gpu_throttled_s"), row.get("duration_s")
    try:
        share = float(seconds) / float(duration)  # type: ignore[arg-type]
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return None if math.isnan(share) else share


def _ratios(comparison: Comparison | None) -> dict[tuple[str, float], float]:
    if comparison is None or "gpu_j_per_output_token_ratio" not in comparison.table:
        return {}
    table = comparison.table
    return {
        (str(r["target"]), float(r["load"])): float(r["gpu_j_per_output_token_ratio"])
        for r in table.to_dict("records")
        if pd.notna(r["gpu_j_per_output_token_ratio"])
    }


def gpu_blocks(
    summary: pd.DataFrame, comparison: Comparison | None, labels: dict[str, str]
) -> list[Block]:
    """Power, energy per output token (× the reference), utilisation and memory per target
    and load; the throttled stages called out; container CPU and memory when recorded."""
    if not has_gpu_figures(summary):
        return []
    rows = by_load(summary)
    simulated = _simulated(rows)
    modes = rows["mode"].dropna().unique()
    unit = load_unit(str(modes[0])) if len(modes) == 1 else "load"
    ratios = _ratios(comparison)
    reference = comparison.reference if comparison is not None else None
    headers = [unit, "target", "source", "mean W", "peak W", "energy J", "J/out tok"]
    headers += ["J/out tok ×ref"] if reference else []
    headers += ["out tok/J", "J/request", "SM active", "GPU util %", "memory MiB", "throttled"]
    table, throttled = [], []
    for r in rows.to_dict("records"):
        if pd.isna(r.get("gpu_energy_j")):
            continue
        load = float(r["load"])
        share = _throttled_share(r)
        row = [_num(load, 0 if load.is_integer() else 1), labels.get(r["target"], r["target"])]
        row += [str(r["gpu_source"]), _num(r["gpu_mean_power_w"], 0)]
        row += [_num(r["gpu_peak_power_w"], 0), _num(r["gpu_energy_j"], 0)]
        row += [_num(r["gpu_j_per_output_token"], 3)]
        if reference:
            ratio = ratios.get((str(r["target"]), load))
            row.append("–" if ratio is None else f"{ratio:.2f}×")
        row += [_num(r["gpu_output_tokens_per_j"], 2), _num(r["gpu_j_per_request"], 1)]
        row += [_num(r["gpu_sm_active"], 2), _num(r["gpu_util_pct"], 0)]
        row += [_num(r["gpu_memory_used_mib"], 0)]
        flag = "n/a" if share is None else f"{'**YES**' if share > 0 else 'no'} {share:.0%}"
        row.append(flag)
        table.append(row)
        if share:
            where = load_unit(str(r["mode"]), load)
            throttled.append(
                f"{labels.get(r['target'], r['target'])} at {where}: clocks held back by power "
                f"or heat for {share:.0%} of the stage"
            )
    title = "GPU power and energy" + (" (simulated)" if simulated else "")
    note = GPU_NOTE + (
        f" Ratios: ÷ reference **{reference}** at the same load (below 1: less energy per token)."
        if reference
        else ""
    )
    if simulated:
        note += (
            " **Simulated**: the simulators' power model (idle, memory and compute power of "
            "the profile's card and quantization, docs/telemetry.md), not a measurement."
        )
    blocks: list[Block] = [Heading(title), Paragraph(note), Table(headers, table)]
    if throttled:
        blocks += [
            Paragraph("Throttled stages (valid, but the card ran below its clocks):"),
            Bullets(throttled),
        ]
    return blocks + _container_blocks(rows, labels, unit)


def _container_blocks(rows: pd.DataFrame, labels: dict[str, str], unit: str) -> list[Block]:
    if "container_memory_mib" not in rows or not rows["container_memory_mib"].notna().any():
        return []
    table = [
        [
            _num(r["load"], 0),
            labels.get(r["target"], r["target"]),
            _num(r["container_cpu_cores"], 2),
            _num(r["container_memory_mib"], 0),
            _num(r["container_memory_peak_mib"], 0),
        ]
        for r in rows.to_dict("records")
        if pd.notna(r.get("container_memory_mib"))
    ]
    return [
        Heading("Containers", 3),
        Paragraph(
            "Each compose target's container over the measured window, from the Docker "
            "Engine's stats API: CPU cores used on average, and memory without page cache "
            "(as `docker stats`)."
        ),
        Table([unit, "target", "CPU cores", "memory MiB", "peak memory MiB"], table),
    ]


def energy_plan_blocks(plan: Plan, labels: dict[str, str]) -> list[Block]:
    """The plan's energy table: at each target's SLO limit, mean GPU power, J and kWh per
    output token, tokens per J, and the energy cost per million output tokens (with
    `kwh_cost`) beside the GPU-hour cost."""
    planned = [t for t in plan.targets if t.energy is not None]
    kwh_cost = plan.inputs.kwh_cost
    if not planned:  # a price asked for and not applied is said, never dropped silently
        return [] if not kwh_cost else [
            Heading("Energy at the SLO limit", 3),
            Paragraph(
                f"No energy cost at ${kwh_cost:g} per kWh: no target has GPU power at its SLO "
                "limit (no samples in gpu.jsonl: `telemetry.source: none`, no GPU seen, or "
                "the limit lies outside the loads measured)."
            ),
        ]  # fmt: skip
    gpu_hour = plan.inputs.gpu_hour_cost
    headers = ["target", "mean W at max", "J/out tok", "out tok/J", "kWh per M out tok"]
    headers += ["energy $ per M out tok"] if kwh_cost else []
    headers += ["GPU-hour $ per M out tok"] if gpu_hour else []
    rows = []
    for t in planned:
        energy = t.energy
        assert energy is not None
        row = [labels.get(t.target, t.target), _num(energy.mean_power_w, 0)]
        row += [_num(energy.j_per_output_token, 3), _num(energy.output_tokens_per_j, 2)]
        row += [_num(energy.kwh_per_million_tokens, 3)]
        row += [_num(energy.cost_per_million_tokens, 4)] if kwh_cost else []
        row += [_num(t.cost_per_million_tokens, 3)] if gpu_hour else []
        rows.append(row)
    price = (
        f"electricity at ${kwh_cost:g} per kWh"
        if kwh_cost
        else "no electricity price (`--kwh-cost` or `analysis.kwh_cost` adds its cost)"
    )
    simulated = any(t.simulated for t in planned)
    note = (
        f"Energy at each target's SLO limit, {price}: the GPU's mean power there "
        "(interpolated in load between the stages around the limit) ÷ its output tok/s. "
        "kWh per M out tok = J/out tok × 10⁶ ÷ 3.6 × 10⁶; energy cost = that × the kWh price. "
        "GPU board only: add the host and cooling (a data centre's PUE) for the wall."
    )
    if simulated:
        note += " **Simulated** power for simulated targets."
    return [Heading("Energy at the SLO limit", 3), Table(headers, rows), Paragraph(note)]
