"""quantbench's own OpenAI-compatible ExLlamaV2 server with Prometheus metrics.

TabbyAPI dropped ExLlamaV2 and never exported metrics. The HTTP layer (`create_app`) runs over
any `Engine`: exllamav2's dynamic generator on a GPU (`Exl2Engine`), or the simulator's engine
on a CPU (services/sim/exllamav2_sim.py, which depends on this package, never the reverse).
Importing this package never imports exllamav2, torch or anything of `services.sim`.
"""

from services.exllamav2.app import SERVER_VERSION, create_app
from services.exllamav2.config import (
    AppConfig,
    CacheMode,
    Exl2Config,
    Exl2ConfigError,
    ServerConfig,
)
from services.exllamav2.engine import (
    Engine,
    EngineError,
    EngineJob,
    EosReason,
    JobRequest,
    JobResult,
    JobStats,
)
from services.exllamav2.exl2_engine import Exl2Engine
from services.exllamav2.metrics import Exl2Metrics, RequestMeter

__all__ = [
    "SERVER_VERSION",
    "AppConfig",
    "CacheMode",
    "Engine",
    "EngineError",
    "EngineJob",
    "EosReason",
    "Exl2Config",
    "Exl2ConfigError",
    "Exl2Engine",
    "Exl2Metrics",
    "JobRequest",
    "JobResult",
    "JobStats",
    "RequestMeter",
    "ServerConfig",
    "create_app",
]
