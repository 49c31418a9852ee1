"""Simulated LLM serving stacks: the real wire format and metrics, with modelled timing.

Every figure a simulator produces is *simulated*; see `profiles/` for where magnitudes come from.
"""

from services.sim.config import EngineProfile, SimSettings
from services.sim.engine import BatchingEngine, EngineObserver, FixedEngine, SimEngine, SimSequence
from services.sim.errors import SimConfigError, SimError
from services.sim.profiles import available_profiles, load_profile
from services.sim.server import READY_PREFIX, build_engine, run, serve
from services.sim.vllm_app import create_vllm_app
from services.sim.vllm_metrics import VllmMetrics

__all__ = [
    "READY_PREFIX",
    "BatchingEngine",
    "EngineObserver",
    "EngineProfile",
    "FixedEngine",
    "SimConfigError",
    "SimEngine",
    "SimError",
    "SimSequence",
    "SimSettings",
    "VllmMetrics",
    "available_profiles",
    "build_engine",
    "create_vllm_app",
    "load_profile",
    "run",
    "serve",
]
