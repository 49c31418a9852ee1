"""Config models of the ExLlamaV2 server, validated once at the CLI boundary.

`AppConfig` is what the HTTP layer needs (the simulator builds one too); `Exl2Config` is what
the real engine needs; `ServerConfig` ties them to an address.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, DirectoryPath, Field, model_validator

__all__ = [
    "PAGE_SIZE",
    "AppConfig",
    "CacheMode",
    "Exl2Config",
    "Exl2ConfigError",
    "ServerConfig",
    "resolve_api_key",
]

CacheMode = Literal["FP16", "Q8", "Q6", "Q4"]
# exllamav2 generator/dynamic.py: PAGED_PAGE_SIZE; the cache and prefill chunks are whole pages.
PAGE_SIZE = 256
# exllamav2 generator/dynamic.py: the default `max_q_size` of ExLlamaV2DynamicGenerator.
_MAX_Q_SIZE = 8


class Exl2ConfigError(Exception):
    """A setting that validates but cannot be used here (e.g. its environment variable is unset)."""


class AppConfig(BaseModel):
    """The HTTP layer: authentication and request defaults."""

    model_config = ConfigDict(extra="forbid")

    api_key_env: str | None = Field(default=None, min_length=1, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    completions_default_max_tokens: int = Field(default=16, ge=1)  # OpenAI's and vLLM's default


class Exl2Config(BaseModel):
    """The real engine: model directory, context, cache and batching (TabbyAPI's names)."""

    model_config = ConfigDict(extra="forbid")

    model_dir: DirectoryPath
    served_model_name: str | None = Field(default=None, min_length=1)
    max_seq_len: int | None = Field(default=None, ge=PAGE_SIZE)  # None: the model's config.json
    # None: as many tokens as free VRAM holds (cache_sizing.py); a number fixes it
    cache_size: int | None = Field(default=None, ge=PAGE_SIZE)
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)  # for the automatic size
    cache_mode: CacheMode = "FP16"
    max_batch_size: int | None = Field(default=None, ge=1)  # None: the generator decides
    chunk_size: int = Field(default=2048, ge=PAGE_SIZE)

    @model_validator(mode="after")
    def _fits_the_generator(self) -> Exl2Config:
        if self.chunk_size % PAGE_SIZE:
            raise ValueError(f"chunk_size must be a multiple of {PAGE_SIZE}")
        if self.cache_size is not None and self.cache_size % PAGE_SIZE:
            raise ValueError(f"cache_size must be a multiple of {PAGE_SIZE}")
        if None not in (self.cache_size, self.max_seq_len):
            assert self.cache_size is not None and self.max_seq_len is not None
            if self.cache_size < self.max_seq_len:
                raise ValueError("cache_size must be >= max_seq_len (one full-length job)")
        # ExLlamaV2DynamicGenerator.__init__ asserts max_batch_size * max_q_size <=
        # config.max_batch_size (1) * config.max_input_len (the prefill chunk, see `chunk`).
        limit = self.chunk // _MAX_Q_SIZE
        if self.max_batch_size is not None and self.max_batch_size > limit:
            raise ValueError(f"max_batch_size must be <= prefill chunk / {_MAX_Q_SIZE} = {limit}")
        return self

    @property
    def chunk(self) -> int:
        """The prefill chunk the engine uses: whole pages, at most the context length."""
        return min(self.chunk_size, self.max_seq_len or self.chunk_size) // PAGE_SIZE * PAGE_SIZE

    @property
    def name(self) -> str:
        """The name clients send as `model`: the served name, else the directory's name."""
        return self.served_model_name or self.model_dir.resolve().name


class ServerConfig(BaseModel):
    """One server process: where it listens, its HTTP layer and its engine."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    app: AppConfig = AppConfig()
    engine: Exl2Config


def resolve_api_key(config: AppConfig, environ: Mapping[str, str]) -> str | None:
    """The API key clients must send, read from `config.api_key_env` (never logged)."""
    if config.api_key_env is None:
        return None
    key = environ.get(config.api_key_env, "")
    if not key:
        raise Exl2ConfigError(f"environment variable {config.api_key_env} (api_key_env) is unset")
    return key
