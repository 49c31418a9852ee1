"""Which HTTP personality serves a simulated stack: a small registry, chosen by name.

Each entry builds a complete aiohttp application (its own metrics registry, engine and
routes) from `SimSettings`. Imports are lazy so one stack's code never loads another's.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CollectorRegistry

from services.sim.config import SimSettings
from services.sim.faults import FaultPlan

__all__ = ["PERSONALITIES", "build_app"]

AppFactory = Callable[[SimSettings, FaultPlan | None, float | None], web.Application]


def _vllm(
    settings: SimSettings, faults: FaultPlan | None, started_at: float | None
) -> web.Application:
    from services.sim.server import build_engine
    from services.sim.vllm_app import create_vllm_app
    from services.sim.vllm_metrics import VllmMetrics

    registry = CollectorRegistry()
    metrics = VllmMetrics(
        registry,
        settings.served_model_name,
        max_model_len=settings.max_model_len,
        started_at=started_at,
    )
    return create_vllm_app(settings, build_engine(settings, metrics, faults), registry, faults)


def _tgi(
    settings: SimSettings, faults: FaultPlan | None, started_at: float | None
) -> web.Application:
    from services.sim.tgi_app import create_tgi_sim_app

    return create_tgi_sim_app(settings, faults=faults)


def _exllamav2(
    settings: SimSettings, faults: FaultPlan | None, started_at: float | None
) -> web.Application:
    from services.exllamav2.simulated import create_exllamav2_sim_app

    return create_exllamav2_sim_app(settings, faults, started_at)


PERSONALITIES: dict[str, AppFactory] = {"vllm": _vllm, "tgi": _tgi, "exllamav2": _exllamav2}


def build_app(
    settings: SimSettings, faults: FaultPlan | None = None, started_at: float | None = None
) -> web.Application:
    """The app for `settings.stack`; `started_at` is the simulated process start (a restart)."""
    return PERSONALITIES[settings.stack](settings, faults, started_at)
