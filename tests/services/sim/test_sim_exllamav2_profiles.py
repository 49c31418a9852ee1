"""The simulated ExLlamaV2 profiles: present, plausible against vLLM's, and servable."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from services.sim import SimSettings, available_profiles, build_app, load_profile


def _step_ms(stack: str, quant: str, gpu: str, batch: int) -> float:
    p = load_profile(stack, quant, gpu)
    return p.decode_step_base_ms + p.decode_step_per_seq_ms * batch


def test_exllamav2_profiles_exist_for_three_gpus() -> None:
    found = {(s, q): gpus for s, q, gpus in available_profiles()}
    for quant in ("exl2", "gptq", "fp16"):
        assert found["exllamav2", quant] == ["a100", "h100", "l4"]
        assert "simulated" in load_profile("exllamav2", quant, "h100").source.lower()


@pytest.mark.parametrize("gpu", ["h100", "a100", "l4"])
def test_exl2_is_fast_at_batch_1_and_scales_worse_than_marlin(gpu: str) -> None:
    assert _step_ms("exllamav2", "exl2", gpu, 1) < _step_ms("vllm", "awq", gpu, 1)
    assert _step_ms("exllamav2", "exl2", gpu, 1) < _step_ms("exllamav2", "gptq", gpu, 1)
    assert _step_ms("exllamav2", "exl2", gpu, 1) < _step_ms("exllamav2", "fp16", gpu, 1)
    assert _step_ms("exllamav2", "exl2", gpu, 64) > _step_ms("vllm", "awq", gpu, 64)
    exl2 = load_profile("exllamav2", "exl2", gpu)
    assert exl2.max_num_seqs == 256 and exl2.max_num_batched_tokens == 2048  # generator defaults


def test_profile_timing_serves_a_request() -> None:
    async def main() -> Any:
        settings = SimSettings(stack="exllamav2", quant="gptq", gpu="l4")
        async with TestClient(TestServer(build_app(settings))) as client:
            resp = await client.post("/v1/completions", json={"prompt": "hi", "max_tokens": 3})
            return await resp.json()

    out = asyncio.run(main())
    assert out["model"] == "sim/llama-3.1-8b-instruct-gptq"
    assert out["usage"]["completion_tokens"] == 3
