"""KV cache sizing: bytes per token as exllamav2 0.3.2 allocates them, and the automatic size."""

from __future__ import annotations

import pytest

from services.exllamav2.cache_sizing import (
    GiB,
    ModelShape,
    cache_bytes_per_token,
    plan_cache,
)

QWEN_7B = ModelShape(num_layers=28, num_kv_heads=4, head_dim=128)  # Qwen2.5-7B config.json


def test_bytes_per_token_follow_cache_py() -> None:
    width = 4 * 128
    assert cache_bytes_per_token(QWEN_7B, "FP16") == 28 * width * 2 * 2  # K and V, 2 bytes
    scales = 2 * (width // 32) * 2
    temp = width * 2 * 2  # one FP16 layer of keys and values for the quantized caches
    assert cache_bytes_per_token(QWEN_7B, "Q8") == 28 * (width + width + scales) + temp
    assert cache_bytes_per_token(QWEN_7B, "Q6") == 28 * (width + width // 2 + scales) + temp
    assert cache_bytes_per_token(QWEN_7B, "Q4") == 28 * (width // 2 + width // 2 + scales) + temp
    assert cache_bytes_per_token(QWEN_7B, "Q4") < cache_bytes_per_token(QWEN_7B, "FP16") / 3


def test_auto_size_fills_the_gpu_up_to_the_utilization_in_whole_pages() -> None:
    per_token = cache_bytes_per_token(QWEN_7B, "FP16")  # 57344 bytes
    plan = plan_cache(
        requested=None,
        max_seq_len=4096,
        bytes_per_token=per_token,
        free_bytes=75 * GiB,  # an 80 GiB card with 5 GiB of weights loaded
        total_bytes=80 * GiB,
        gpu_memory_utilization=0.9,
    )
    budget = 72 * GiB - 5 * GiB
    assert plan.tokens == budget // per_token // 256 * 256
    assert plan.tokens % 256 == 0 and plan.tokens * per_token <= budget
    assert plan.tokens > 1_000_000, "far more than the 4096 tokens of the old default"
    assert plan.source == "auto" and "free VRAM" in plan.describe()


def test_a_requested_size_is_kept_and_too_little_memory_is_an_error() -> None:
    kept = plan_cache(requested=65536, max_seq_len=4096, bytes_per_token=1)
    assert (kept.tokens, kept.source) == (65536, "flag")
    with pytest.raises(ValueError, match="cannot hold one max_seq_len"):
        plan_cache(
            requested=None,
            max_seq_len=4096,
            bytes_per_token=cache_bytes_per_token(QWEN_7B, "FP16"),
            free_bytes=GiB // 10,
            total_bytes=80 * GiB,
        )
