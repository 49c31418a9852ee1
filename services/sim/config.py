"""Config models of the simulator: what to simulate (settings) and how fast (engine profile).

Validated once at the boundary (CLI or bench.yaml); everything else takes these models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.sim.faults import FaultConfig

__all__ = ["EngineProfile", "SimSettings", "StackName", "TimingMode"]

StackName = Literal["vllm", "tgi", "exllamav2"]
TimingMode = Literal["profile", "fixed"]


class SimSettings(BaseModel):
    """One simulated server: which stack it imitates, its timing model and where it listens."""

    model_config = ConfigDict(extra="forbid")

    stack: StackName = "vllm"
    quant: str = Field("awq", min_length=1)
    gpu: str = Field("h100", min_length=1)
    model: str | None = Field(None, min_length=1)
    timing: TimingMode = "profile"
    ttft_ms: float = Field(50.0, ge=0)
    itl_ms: float = Field(10.0, ge=0)
    max_model_len: int = Field(4096, ge=16)
    max_concurrent_requests: int = Field(128, ge=1)  # TGI's router limit; others ignore it
    seed: int = 0
    speed: float = Field(1.0, gt=0)  # all simulated durations are divided by this
    faults: FaultConfig = FaultConfig()
    request_log: Path | None = None  # JSON lines: each request's arrival, token times, fault
    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, le=65535)

    @property
    def served_model_name(self) -> str:
        """The name clients must send as `model` (vLLM's `--served-model-name`)."""
        return self.model or f"sim/llama-3.1-8b-instruct-{self.quant}"


class EngineProfile(BaseModel):
    """Continuous-batching cost model of one stack x quantization x GPU (simulated magnitudes)."""

    model_config = ConfigDict(extra="forbid")

    max_num_seqs: int = Field(ge=1)
    max_num_batched_tokens: int = Field(ge=1)
    kv_cache_tokens: int = Field(ge=1)
    decode_step_base_ms: float = Field(ge=0)
    decode_step_per_seq_ms: float = Field(ge=0)
    prefill_ms_per_token: float = Field(ge=0)
    #: reserve: prompt + max_tokens held from admission (TGI, ExLlamaV2);
    #: on_demand: KV taken as sequences grow, preempting when it runs out (vLLM)
    kv_allocation: Literal["reserve", "on_demand"] = "reserve"
    source: str = ""
    description: str = ""

    @model_validator(mode="after")
    def _budget_covers_batch(self) -> EngineProfile:
        # vLLM rejects max_num_batched_tokens < max_num_seqs; it also guarantees prefill progress.
        if self.max_num_batched_tokens < self.max_num_seqs:
            raise ValueError("max_num_batched_tokens must be >= max_num_seqs")
        return self
