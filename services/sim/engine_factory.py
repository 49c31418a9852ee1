"""Building the engine a `SimSettings` asks for: below every personality, so each one (and
the simulated ExLlamaV2 engine) composes engine, metrics and app the same way."""

from __future__ import annotations

from services.sim.config import SimSettings
from services.sim.engine import BatchingEngine, EngineObserver, FixedEngine, SimEngine
from services.sim.errors import SimConfigError
from services.sim.faults import FaultPlan
from services.sim.profiles import load_profile

__all__ = ["build_engine"]


def build_engine(
    settings: SimSettings, observer: EngineObserver | None = None, faults: FaultPlan | None = None
) -> SimEngine:
    """The engine `settings.timing` asks for, its times divided by `speed` and its decode
    times multiplied by the `slowdown` fault; raises `SimConfigError` for an unknown profile or a
    `max_model_len` its KV cache cannot hold."""
    speed, slowdown = settings.speed, settings.faults.slowdown
    if settings.timing == "fixed":
        return FixedEngine(
            settings.ttft_ms / speed,
            settings.itl_ms * slowdown / speed,
            observer,
            faults=faults,
            burst=settings.burst,
        )
    profile = load_profile(settings.stack, settings.quant, settings.gpu)
    if settings.max_model_len > profile.kv_cache_tokens:  # vLLM refuses to start, too
        raise SimConfigError(
            f"max_model_len {settings.max_model_len} is more than the KV cache of the "
            f"{settings.stack}-{settings.quant} profile on {settings.gpu} holds "
            f"({profile.kv_cache_tokens} tokens): lower max_model_len"
        )
    scaled = profile.model_copy(
        update={
            "decode_step_base_ms": profile.decode_step_base_ms * slowdown / speed,
            "decode_step_per_seq_ms": profile.decode_step_per_seq_ms * slowdown / speed,
            "prefill_ms_per_token": profile.prefill_ms_per_token / speed,
            "max_num_seqs": min(profile.max_num_seqs, settings.max_num_seqs),
        }
    )
    return BatchingEngine(scaled, observer, faults=faults)
