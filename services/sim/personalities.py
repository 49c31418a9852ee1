"""Which HTTP personality serves a simulated stack: a small registry, chosen by name.

Every entry composes the same three parts in the same order: the stack's metrics (the engine's
observer), the engine (`engine_factory.build_engine`), then the app over both. Each gets its
own metrics registry, so several simulators can share a process (tests). Every app also shows
its simulated GPU as dcgm-exporter would (`/dcgm/metrics`): the engine's observer is teed to
the GPU's power model (`gpu_power.GpuTee`).
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CollectorRegistry

from services.sim.config import SimSettings
from services.sim.dcgm_page import add_dcgm_route
from services.sim.engine_factory import build_engine
from services.sim.exllamav2_sim import EngineGauges, SimulatedEngine, create_exllamav2_sim_app
from services.sim.faults import FaultPlan
from services.sim.gpu_power import GpuTee, SimulatedGpu, power_model
from services.sim.tgi_app import create_tgi_sim_app, tgi_metrics_for
from services.sim.vllm_app import create_vllm_app
from services.sim.vllm_metrics import VllmMetrics

__all__ = ["PERSONALITIES", "build_app"]

AppFactory = Callable[[SimSettings, FaultPlan | None, float | None, SimulatedGpu], web.Application]


def _vllm(
    settings: SimSettings, faults: FaultPlan | None, started_at: float | None, gpu: SimulatedGpu
) -> web.Application:
    registry = CollectorRegistry()
    metrics = VllmMetrics(
        registry,
        settings.served_model_name,
        max_model_len=settings.max_model_len,
        started_at=started_at,
    )
    engine = build_engine(settings, GpuTee(metrics, gpu), faults)
    return create_vllm_app(settings, engine, registry, faults)


def _tgi(
    settings: SimSettings, faults: FaultPlan | None, started_at: float | None, gpu: SimulatedGpu
) -> web.Application:
    metrics = tgi_metrics_for(settings)  # TGI exports no process series: nothing to restart
    engine = build_engine(settings, GpuTee(metrics, gpu), faults)
    return create_tgi_sim_app(settings, engine, metrics, faults)


def _exllamav2(
    settings: SimSettings, faults: FaultPlan | None, started_at: float | None, gpu: SimulatedGpu
) -> web.Application:
    gauges = EngineGauges()  # the server measures the rest from the engine's results
    engine = build_engine(settings, GpuTee(gauges, gpu), faults)
    return create_exllamav2_sim_app(
        settings, SimulatedEngine(settings, engine, gauges), faults, started_at
    )


PERSONALITIES: dict[str, AppFactory] = {"vllm": _vllm, "tgi": _tgi, "exllamav2": _exllamav2}


def build_app(
    settings: SimSettings,
    faults: FaultPlan | None = None,
    started_at: float | None = None,
    gpu: SimulatedGpu | None = None,
) -> web.Application:
    """The app for `settings.stack`; `started_at` is the simulated process start (a restart).
    `gpu` outlives a simulated restart (the card keeps its energy counter); default: a new one."""
    gpu = gpu or SimulatedGpu(power_model(settings))
    app = PERSONALITIES[settings.stack](settings, faults, started_at, gpu)
    add_dcgm_route(app, gpu, settings)
    return app
