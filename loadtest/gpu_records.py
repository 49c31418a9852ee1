"""The GPU sample record: one row per GPU per sampling instant, in `gpu.jsonl` of a run directory.

Samples come from NVML or `nvidia-smi` (quantbench/gpu_sampler.py, hosts without DCGM), from a
page scraped off NVIDIA's dcgm-exporter (`samples_from_dcgm` below), or from a simulator that
speaks the exporter's format. `analysis` reads GPU figures through this schema, like the request
records; docs/telemetry.md gives each field's source, unit and sampling caveats.
"""

from __future__ import annotations

from enum import IntFlag
from pathlib import Path
from typing import Literal

from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel, ConfigDict

from loadtest.jsonl import read_jsonl

__all__ = [
    "DCGM_FIELDS",
    "GPU_FILE",
    "THROTTLING",
    "GpuSample",
    "GpuSource",
    "ThrottleReason",
    "read_gpu_samples",
    "samples_from_dcgm",
]

GPU_FILE = "gpu.jsonl"

GpuSource = Literal["nvml", "nvidia-smi", "dcgm"]


class ThrottleReason(IntFlag):
    """Why the clocks are below the maximum: one bitmask, the same bits in NVML
    (`nvmlClocksEventReason*`, nvml.h), DCGM (`DCGM_FI_DEV_CLOCKS_EVENT_REASONS`,
    `DCGM_CLOCKS_EVENT_REASON_*`) and `nvidia-smi --query-gpu=clocks_event_reasons.active`."""

    GPU_IDLE = 0x1
    APPLICATIONS_CLOCKS_SETTING = 0x2
    SW_POWER_CAP = 0x4
    HW_SLOWDOWN = 0x8
    SYNC_BOOST = 0x10
    SW_THERMAL = 0x20
    HW_THERMAL = 0x40
    HW_POWER_BRAKE = 0x80
    DISPLAY_CLOCKS = 0x100


# The reasons that mean the card was held back by power or heat while working; idle, the
# clock settings a user chose and sync boost are not throttling.
THROTTLING = (
    ThrottleReason.SW_POWER_CAP
    | ThrottleReason.HW_SLOWDOWN
    | ThrottleReason.SW_THERMAL
    | ThrottleReason.HW_THERMAL
    | ThrottleReason.HW_POWER_BRAKE
)


class GpuSample(BaseModel):
    """One GPU at one instant. A figure the source cannot give is None, never 0.

    `wall_s` is Unix time, to align with stage windows (stages.jsonl) and Prometheus.
    `target` is the target measured while the sample was taken (`quantbench run`; None from
    the standalone sampler).
    `energy_mj` is the driver's cumulative counter (mJ since the driver loaded; Volta and
    newer), so a difference of two samples is the energy between them. `*_active` are DCGM's
    profiling ratios (0-1), which NVML and nvidia-smi do not give.
    """

    model_config = ConfigDict(extra="forbid")

    wall_s: float
    source: GpuSource
    simulated: bool = False
    target: str | None = None
    gpu: int
    uuid: str = ""
    name: str = ""
    power_w: float | None = None
    energy_mj: float | None = None
    power_limit_w: float | None = None
    gpu_util_pct: float | None = None
    mem_util_pct: float | None = None
    sm_active: float | None = None
    dram_active: float | None = None
    tensor_active: float | None = None
    memory_used_mib: float | None = None
    memory_total_mib: float | None = None
    temperature_c: float | None = None
    throttle_reasons: int | None = None
    sm_clock_mhz: float | None = None
    mem_clock_mhz: float | None = None

    @property
    def throttled(self) -> bool | None:
        """Whether power or heat held the clocks back (None: the source did not say)."""
        if self.throttle_reasons is None:
            return None
        return bool(self.throttle_reasons & THROTTLING)


# dcgm-exporter metric (the DCGM field name, as in its counters CSV) -> GpuSample field.
# Units are DCGM's and already the record's (docs/telemetry.md). The legacy name of the
# clock-event field is still accepted by the exporter (go-dcgm resolves it to field 112).
DCGM_FIELDS: dict[str, str] = {
    "DCGM_FI_DEV_POWER_USAGE": "power_w",
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": "energy_mj",
    "DCGM_FI_DEV_POWER_MGMT_LIMIT": "power_limit_w",
    "DCGM_FI_DEV_GPU_UTIL": "gpu_util_pct",
    "DCGM_FI_DEV_MEM_COPY_UTIL": "mem_util_pct",
    "DCGM_FI_PROF_SM_ACTIVE": "sm_active",
    "DCGM_FI_PROF_DRAM_ACTIVE": "dram_active",
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": "tensor_active",
    "DCGM_FI_DEV_FB_USED": "memory_used_mib",
    "DCGM_FI_DEV_GPU_TEMP": "temperature_c",
    "DCGM_FI_DEV_CLOCKS_EVENT_REASONS": "throttle_reasons",
    "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS": "throttle_reasons",
    "DCGM_FI_DEV_SM_CLOCK": "sm_clock_mhz",
    "DCGM_FI_DEV_MEM_CLOCK": "mem_clock_mhz",
}
# Framebuffer parts that add up to the card's memory (MiB).
_FB_PARTS = ("DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE", "DCGM_FI_DEV_FB_RESERVED")


def samples_from_dcgm(text: str, wall_s: float) -> list[GpuSample]:
    """One GpuSample per GPU from a dcgm-exporter `/metrics` page scraped at `wall_s`.

    Series are grouped by the exporter's `gpu` label (with `UUID` and `modelName`); MIG
    instances (series with `GPU_I_ID`) are left out. A page of a simulated exporter marks
    its series `simulated="true"`. Raises ValueError if the text is not exposition format.
    """
    values: dict[int, dict[str, float]] = {}
    idents: dict[int, dict[str, str]] = {}
    for family in text_string_to_metric_families(text):
        name = family.name
        if name not in DCGM_FIELDS and name not in _FB_PARTS:
            continue
        for sample in family.samples:
            labels = sample.labels
            if "GPU_I_ID" in labels or not labels.get("gpu", "").isdigit():
                continue
            gpu = int(labels["gpu"])
            values.setdefault(gpu, {})[name] = float(sample.value)
            ident = idents.setdefault(gpu, {})
            ident.setdefault("uuid", labels.get("UUID", labels.get("uuid", "")))
            ident.setdefault("name", labels.get("modelName", labels.get("model_name", "")))
            ident.setdefault("simulated", labels.get("simulated", ""))
    return [_dcgm_sample(gpu, values[gpu], idents[gpu], wall_s) for gpu in sorted(values)]


def _dcgm_sample(
    gpu: int, fields: dict[str, float], ident: dict[str, str], wall_s: float
) -> GpuSample:
    record: dict[str, float | int] = {}
    for name, value in fields.items():
        target = DCGM_FIELDS.get(name)
        if target == "throttle_reasons":
            record[target] = int(value)
        elif target is not None:
            record[target] = value
    if all(part in fields for part in _FB_PARTS[:2]):
        record["memory_total_mib"] = sum(fields.get(part, 0.0) for part in _FB_PARTS)
    return GpuSample(
        wall_s=wall_s,
        source="dcgm",
        simulated=ident["simulated"] == "true",
        gpu=gpu,
        uuid=ident["uuid"],
        name=ident["name"],
        **record,  # type: ignore[arg-type]
    )


def read_gpu_samples(path: Path) -> list[GpuSample]:
    """The samples of a `gpu.jsonl`, in file order; a torn last line (a killed sampler) is
    skipped, any other bad line raises ValueError naming the file and line (the analysis
    reads the file with `read_jsonl` itself, to skip and report such lines instead)."""
    found = read_jsonl(path, GpuSample.model_validate_json)
    if found.corrupt:
        raise ValueError(f"{path}:{found.corrupt[0]}: not a GPU sample ({found.first_error})")
    return found.rows
