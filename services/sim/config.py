"""Config models of the simulator: what to simulate (settings), what to break (faults) and how
fast the engine is (engine profile).

Validated once at the boundary (CLI, `--settings-json` or bench.yaml); everything else takes
these models. Field descriptions double as the `quantbench sim` flag help (`cli_flags.py`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "COMPOSE_MAX_INPUT_TOKENS",
    "COMPOSE_MAX_MODEL_LEN",
    "COMPOSE_TGI_MAX_CONCURRENT_REQUESTS",
    "EngineProfile",
    "ErrorFault",
    "FaultConfig",
    "QualityProfile",
    "SimSettings",
    "StackName",
    "TimingMode",
]

StackName = Literal["vllm", "tgi", "exllamav2"]
TimingMode = Literal["profile", "fixed"]

# What docker-compose.yml deploys (`MAX_MODEL_LEN`, `MAX_INPUT_TOKENS`, `MAX_NUM_SEQS`,
# `TGI_MAX_CONCURRENT_REQUESTS` in .env.example), so a simulator refuses and batches what the
# real deployment would; tests/services/sim/test_sim_limits.py reads both files to check.
COMPOSE_MAX_MODEL_LEN = 4096
COMPOSE_MAX_INPUT_TOKENS = 4095
COMPOSE_MAX_NUM_SEQS = 256
COMPOSE_TGI_MAX_CONCURRENT_REQUESTS = 1024


class ErrorFault(BaseModel):
    """Answer a fraction of requests with an HTTP error status."""

    model_config = ConfigDict(extra="forbid")

    status: int = Field(ge=400, le=599)
    rate: float = Field(gt=0, le=1)


class FaultConfig(BaseModel):
    """What to break, how often and when (bench.yaml `sim.faults`, or `quantbench sim` flags).

    Times are simulated seconds (divided by `speed`) after the server started, or after its
    first generation request (`times_from`); `refuse_for_s` always counts from the start.
    """

    model_config = ConfigDict(extra="forbid")

    times_from: Literal["start", "first_request"] = Field(
        default="start",
        description="fault times count from the server's start or from its first generation "
        "request (independent of how long the load generator takes to start)",
    )
    stall_at_s: float | None = Field(
        default=None, ge=0, description="stall every stream at this time ..."
    )
    stall_for_s: float = Field(default=0.0, ge=0, description="... for this long")
    errors: list[ErrorFault] = Field(
        default=[], description="answer this fraction of requests with this HTTP status"
    )
    cut_rate: float = Field(default=0.0, ge=0, le=1, description="fraction of streams cut mid-way")
    malformed_rate: float = Field(
        default=0.0, ge=0, le=1, description="fraction of streams with an event that is not JSON"
    )
    fault_after_events: int = Field(
        default=2, ge=0, description="events (tokens) sent before a cut, bad event or abort"
    )
    hang_rate: float = Field(
        default=0.0, ge=0, le=1, description="fraction of requests never answered"
    )
    abort_rate: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="fraction of requests the engine aborts (vLLM: finish_reason abort)",
    )
    refuse_for_s: float = Field(
        default=0.0, ge=0, description="refuse connections for this long after start"
    )
    restart_at_s: float | None = Field(
        default=None, ge=0, description="restart (connections dropped, counters reset) at this time"
    )
    restart_after_requests: int | None = Field(
        default=None,
        ge=1,
        description="restart once this many generation requests were answered (ties the "
        "restart to the load schedule rather than to the server's start)",
    )
    restart_down_s: float = Field(default=1.0, ge=0, description="downtime of the restart")
    slowdown: float = Field(default=1.0, gt=0, description="multiply decode time by this")
    seed: int = Field(default=0, description="seed of the per-request fault draws")

    @model_validator(mode="after")
    def _rates_fit(self) -> FaultConfig:
        total = (
            self.cut_rate + self.malformed_rate + self.hang_rate + sum(e.rate for e in self.errors)
        )
        if total > 1:
            raise ValueError(f"fault rates add up to {total:g}; they must not exceed 1")
        if self.restart_at_s is not None and self.restart_after_requests is not None:
            raise ValueError("give restart_at_s or restart_after_requests, not both")
        return self


class SimSettings(BaseModel):
    """One simulated server: which stack it imitates, its timing model and where it listens."""

    model_config = ConfigDict(extra="forbid")

    stack: StackName = Field("vllm", description="serving stack to imitate")
    quant: str = Field("awq", min_length=1, description="quantization profile")
    gpu: str = Field("h100", min_length=1, description="GPU whose profile to use")
    model: str | None = Field(
        None,
        min_length=1,
        description="served model name (default: sim/llama-3.1-8b-instruct-QUANT)",
    )
    timing: TimingMode = Field(
        "profile",
        description="profile: continuous-batching model of the profile; fixed: exact "
        "ttft-ms/itl-ms",
    )
    ttft_ms: float = Field(50.0, ge=0, description="fixed timing: time to first token (ms)")
    itl_ms: float = Field(10.0, ge=0, description="fixed timing: inter-token latency (ms)")
    burst: int = Field(
        1,
        ge=1,
        description="fixed timing: tokens come this many at a time (one event each, written "
        "together) every burst x itl-ms: more events per server write (benchmarks)",
    )
    max_model_len: int = Field(
        COMPOSE_MAX_MODEL_LEN, ge=16, description="context length (prompt + output tokens)"
    )
    max_input_tokens: int | None = Field(
        None,
        ge=1,
        description=f"TGI only: longest prompt (default: {COMPOSE_MAX_INPUT_TOKENS}, at most "
        "max-model-len - 1)",
    )
    max_num_seqs: int = Field(
        COMPOSE_MAX_NUM_SEQS,
        ge=1,
        description="most sequences in one batch (vLLM --max-num-seqs, TGI and ExLlamaV2 "
        "--max-batch-size); caps the profile's own value",
    )
    max_concurrent_requests: int = Field(
        COMPOSE_TGI_MAX_CONCURRENT_REQUESTS,
        ge=1,
        description="TGI only: requests beyond this are refused as overloaded",
    )
    seed: int = Field(0, description="seed of the generated text and of the quality degradation")
    ppl_factor: float | None = Field(
        None,
        gt=0,
        description="perplexity of this quant over FP16's on the same text, e.g. 1.03 "
        "(default: the profile's quality block)",
    )
    disagreement_rate: float | None = Field(
        None,
        ge=0,
        le=1,
        description="chance per greedy token that the output leaves FP16's "
        "(default: the profile's quality block)",
    )
    speed: float = Field(1.0, gt=0, description="divide every simulated duration by this")
    faults: FaultConfig = FaultConfig()
    request_log: Path | None = Field(
        None, description="append one JSON line per request (times, tokens, fault) here"
    )
    host: str = Field("127.0.0.1", description="address to bind")
    port: int = Field(0, ge=0, le=65535, description="port to bind; 0 lets the OS pick")

    @model_validator(mode="after")
    def _input_fits_context(self) -> SimSettings:
        if self.max_input_tokens is not None and self.max_input_tokens >= self.max_model_len:
            raise ValueError("max_input_tokens must be less than max_model_len (TGI's rule)")
        return self

    @property
    def served_model_name(self) -> str:
        """The name clients must send as `model` (vLLM's `--served-model-name`)."""
        return self.model or f"sim/llama-3.1-8b-instruct-{self.quant}"

    @property
    def input_token_limit(self) -> int:
        """TGI's `--max-input-tokens`: as set, else compose's value within the context."""
        if self.max_input_tokens is not None:
            return self.max_input_tokens
        return min(COMPOSE_MAX_INPUT_TOKENS, self.max_model_len - 1)


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
    #: automatic prefix caching (vLLM V1's default, `enable_prefix_caching`): full blocks of
    #: `block_size` prompt tokens a request finds cached skip their prefill
    #: (services/sim/prefix_cache.py); on_demand KV only
    prefix_caching: bool = False
    block_size: int = Field(default=16, ge=1)
    source: str = ""
    description: str = ""

    @model_validator(mode="after")
    def _caching_needs_blocks(self) -> EngineProfile:
        if self.prefix_caching and self.kv_allocation != "on_demand":
            raise ValueError("prefix_caching needs kv_allocation: on_demand (KV in blocks)")
        return self

    @model_validator(mode="after")
    def _budget_covers_batch(self) -> EngineProfile:
        # vLLM rejects max_num_batched_tokens < max_num_seqs; it also guarantees prefill progress.
        if self.max_num_batched_tokens < self.max_num_seqs:
            raise ValueError("max_num_batched_tokens must be >= max_num_seqs")
        return self


class QualityProfile(BaseModel):
    """How far a quantization's simulated outputs are from FP16's (simulated magnitudes).

    `ppl_factor`: perplexity on any long text is FP16's times this; `disagreement_rate`: the
    chance, per greedy token, that the choice differs from FP16's (after which the contexts,
    and so the rest of the output, differ too). FP16 is 1.0 and 0.0.
    """

    model_config = ConfigDict(extra="forbid")

    ppl_factor: float = Field(default=1.0, gt=0)
    disagreement_rate: float = Field(default=0.0, ge=0, le=1)
    source: str = ""
