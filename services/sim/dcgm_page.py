"""The simulated GPU as NVIDIA's dcgm-exporter shows a GPU: `GET /dcgm/metrics` on every simulator.

The page has the exporter's series names, types and help (services/dcgm-exporter/counters.csv,
the fields the compose deployment collects), its labels in its order (`gpu`, `UUID`,
`pci_bus_id`, `device`, `modelName`, then the label fields: NVIDIA/dcgm-exporter
internal/pkg/rendermetrics/render_metrics.go, gpuMetricsFormat) and its number formats
(doubles `%f`, integers `%d`), plus `simulated="true"` on every series. Fields the model does
not produce (SM occupancy, memory temperature) are left out, as the exporter leaves out a
field a GPU does not support. One GPU per simulator: `gpu="0"`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from aiohttp import web

from services.sim.config import SimSettings
from services.sim.gpu_power import GpuReading, SimulatedGpu

__all__ = ["DCGM_PATH", "FIELDS", "add_dcgm_route", "gpu_labels", "render_page"]

DCGM_PATH = "/dcgm/metrics"
_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# (DCGM field, Prometheus type, help as in counters.csv, the reading's value, integer field)
FIELDS: tuple[tuple[str, str, str, Callable[[GpuReading], float], bool], ...] = (
    ("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W).", lambda r: r.power_w, False),
    ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "counter",
     "Total energy consumption since boot (in mJ).", lambda r: r.energy_mj, True),
    ("DCGM_FI_DEV_POWER_MGMT_LIMIT", "gauge", "Power management limit (in W).",
     lambda r: r.power_limit_w, False),
    ("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %).", lambda r: r.gpu_util_pct, True),
    ("DCGM_FI_DEV_MEM_COPY_UTIL", "gauge", "Memory utilization (in %).",
     lambda r: r.mem_copy_util_pct, True),
    ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "gauge", "Ratio of time the graphics engine is active.",
     lambda r: r.gr_engine_active, False),
    ("DCGM_FI_PROF_SM_ACTIVE", "gauge", "The ratio of cycles an SM has at least 1 warp assigned.",
     lambda r: r.sm_active, False),
    ("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "gauge",
     "Ratio of cycles the tensor (HMMA) pipe is active.", lambda r: r.tensor_active, False),
    ("DCGM_FI_PROF_DRAM_ACTIVE", "gauge",
     "Ratio of cycles the device memory interface is active sending or receiving data.",
     lambda r: r.dram_active, False),
    ("DCGM_FI_DEV_FB_FREE", "gauge", "Framebuffer memory free (in MiB).",
     lambda r: r.fb_free_mib, True),
    ("DCGM_FI_DEV_FB_USED", "gauge", "Framebuffer memory used (in MiB).",
     lambda r: r.fb_used_mib, True),
    ("DCGM_FI_DEV_FB_RESERVED", "gauge", "Framebuffer memory reserved (in MiB).",
     lambda r: r.fb_reserved_mib, True),
    ("DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C).", lambda r: r.temperature_c, True),
    ("DCGM_FI_DEV_SM_CLOCK", "gauge", "SM clock frequency (in MHz).",
     lambda r: r.sm_clock_mhz, True),
    ("DCGM_FI_DEV_MEM_CLOCK", "gauge", "Memory clock frequency (in MHz).",
     lambda r: r.mem_clock_mhz, True),
    ("DCGM_FI_DEV_CLOCKS_EVENT_REASONS", "gauge",
     "Current clock event reasons (bitmask of DCGM_CLOCKS_EVENT_REASON_*).",
     lambda r: r.clock_event_reasons, True),
    ("DCGM_FI_DEV_POWER_VIOLATION", "counter",
     "Throttling duration due to power constraints (in ns).",
     lambda r: r.power_violation_ns, True),
    ("DCGM_FI_DEV_THERMAL_VIOLATION", "counter",
     "Throttling duration due to thermal constraints (in ns).", lambda r: 0, True),
    ("DCGM_FI_DEV_XID_ERRORS", "gauge", "Value of the last XID error encountered.",
     lambda r: 0, True),
)  # fmt: skip


def gpu_labels(settings: SimSettings, model_name: str) -> str:
    """The label set of every series: the exporter's GPU labels, the driver-version label
    field, and `simulated`. The UUID is stable for a stack, quant and card."""
    name = f"quantbench-sim/{settings.stack}-{settings.quant}-{settings.gpu}"
    gpu_uuid = f"GPU-{uuid.uuid5(uuid.NAMESPACE_URL, name)}"
    return (
        f'gpu="0",UUID="{gpu_uuid}",pci_bus_id="00000000:18:00.0",device="nvidia0",'
        f'modelName="{model_name}",DCGM_FI_DRIVER_VERSION="simulated",simulated="true"'
    )


def render_page(reading: GpuReading, labels: str) -> str:
    """The exposition text of one reading."""
    lines = []
    for name, kind, help_text, value, integer in FIELDS:
        number = value(reading)
        text = f"{round(number):d}" if integer else f"{number:f}"
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        lines.append(f"{name}{{{labels}}} {text}")
    return "\n".join(lines) + "\n"


def add_dcgm_route(app: web.Application, gpu: SimulatedGpu, settings: SimSettings) -> None:
    """Serve `gpu` at DCGM_PATH on `app` (before the app starts)."""
    labels = gpu_labels(settings, gpu.model.spec.model_name)

    async def dcgm_metrics(request: web.Request) -> web.Response:
        body = render_page(gpu.reading(), labels)
        return web.Response(text=body, headers={"Content-Type": _CONTENT_TYPE})

    app.router.add_get(DCGM_PATH, dcgm_metrics)
