"""How many tokens of KV cache to allocate: what the user asked, or what free VRAM holds.

exllamav2's paged generator reserves a job's pages for prompt + max_new_tokens before it
starts, so the cache size bounds how many requests run at once; its default (the context
length) fits a handful. Byte counts follow exllamav2 0.3.2 `cache.py`: per layer and token,
keys and values of `num_key_value_heads x head_dim` elements, FP16 (2 bytes each) or packed
(Q8: 1 byte, Q6: 1 byte for keys and 1/2 for values, Q4: 1/2 each) plus FP16 scales for every
32 elements, and for the quantized caches one FP16 layer of temporary keys and values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from services.exllamav2.config import PAGE_SIZE, CacheMode

__all__ = ["CachePlan", "ModelShape", "cache_bytes_per_token", "plan_cache"]

GiB = 1024**3
# cache.py: elements per byte (weights_per_element_k, weights_per_element_v) of each mode.
_PACKING: dict[str, tuple[int, int]] = {"Q8": (1, 1), "Q6": (1, 2), "Q4": (2, 2)}


@dataclass(frozen=True, slots=True)
class ModelShape:
    """What the cache size depends on, from the model's config."""

    num_layers: int
    num_kv_heads: int
    head_dim: int


@dataclass(frozen=True, slots=True)
class CachePlan:
    """The chosen size and why, for the logs and `/info`."""

    tokens: int
    source: Literal["flag", "auto"]
    bytes_per_token: int
    free_bytes: int | None = None
    total_bytes: int | None = None
    gpu_memory_utilization: float | None = None

    def describe(self) -> str:
        if self.source == "flag":
            return f"{self.tokens} tokens (--cache-size)"
        assert self.free_bytes is not None and self.total_bytes is not None
        return (
            f"{self.tokens} tokens from free VRAM ({self.free_bytes / GiB:.1f} of "
            f"{self.total_bytes / GiB:.1f} GiB free after loading, using up to "
            f"{self.gpu_memory_utilization:.0%} of the GPU)"
        )


def cache_bytes_per_token(shape: ModelShape, mode: CacheMode) -> int:
    """Bytes of cache one token takes, all layers together."""
    width = shape.num_kv_heads * shape.head_dim
    if mode == "FP16":
        return shape.num_layers * width * 2 * 2
    per_k, per_v = _PACKING[mode]
    per_layer = width // per_k + width // per_v + 2 * (width // 32) * 2
    return shape.num_layers * per_layer + width * 2 * 2  # + the FP16 temporary layer


def plan_cache(
    *,
    requested: int | None,
    max_seq_len: int,
    bytes_per_token: int,
    free_bytes: int | None = None,
    total_bytes: int | None = None,
    gpu_memory_utilization: float = 0.9,
) -> CachePlan:
    """`requested` tokens, or the most whole pages that fit while the process stays within
    `gpu_memory_utilization` of the GPU (weights, as loaded, already counted in what is used),
    the rest left for activations. Raises ValueError if not even one full-length job fits."""
    if requested is not None:
        return CachePlan(requested, "flag", bytes_per_token)
    if free_bytes is None or total_bytes is None:
        raise ValueError("sizing the cache from free VRAM needs the GPU's free and total memory")
    used = total_bytes - free_bytes
    budget = min(free_bytes, int(total_bytes * gpu_memory_utilization) - used)
    tokens = max(budget, 0) // bytes_per_token // PAGE_SIZE * PAGE_SIZE
    needed = -(-max_seq_len // PAGE_SIZE) * PAGE_SIZE
    if tokens < needed:
        raise ValueError(
            f"the KV cache that fits in free VRAM ({tokens} tokens) cannot hold one "
            f"max_seq_len ({max_seq_len}) job: lower --max-seq-len, use --cache-mode Q8/Q4, "
            "raise --gpu-memory-utilization or free the GPU"
        )
    return CachePlan(
        tokens, "auto", bytes_per_token, free_bytes, total_bytes, gpu_memory_utilization
    )
