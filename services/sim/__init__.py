"""Simulated LLM serving stacks: the real wire format and metrics, with modelled timing.

Every figure a simulator produces is *simulated*; see `profiles/` for where magnitudes come from.
"""

from services.sim.config import EngineProfile, ErrorFault, FaultConfig, SimSettings
from services.sim.engine import BatchingEngine, EngineObserver, FixedEngine, SimEngine, SimSequence
from services.sim.engine_factory import build_engine
from services.sim.errors import SimConfigError, SimError
from services.sim.personalities import build_app
from services.sim.profiles import available_profiles, load_profile
from services.sim.server import READY_PREFIX, run, serve
from services.sim.vllm_app import create_vllm_app
from services.sim.vllm_metrics import VllmMetrics

__all__ = [
    "READY_PREFIX",
    "BatchingEngine",
    "EngineObserver",
    "EngineProfile",
    "ErrorFault",
    "FaultConfig",
    "FixedEngine",
    "SimConfigError",
    "SimEngine",
    "SimError",
    "SimSequence",
    "SimSettings",
    "VllmMetrics",
    "available_profiles",
    "build_app",
    "build_engine",
    "create_vllm_app",
    "load_profile",
    "run",
    "serve",
]
