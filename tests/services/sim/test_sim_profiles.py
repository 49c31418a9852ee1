"""Profiles, settings and the stand-in tokenizer."""

from __future__ import annotations

import itertools

import pytest
from pydantic import ValidationError

from services.sim import (
    EngineProfile,
    SimConfigError,
    SimSettings,
    available_profiles,
    load_profile,
)
from services.sim.tokens import chat_prompt_tokens, chat_token_ids, count_tokens, words


def _step_ms(stack: str, quant: str, batch: int) -> float:
    p = load_profile(stack, quant, "h100")
    return p.decode_step_base_ms + p.decode_step_per_seq_ms * batch


def test_available_profiles_cover_every_stack_quant_and_gpu_class() -> None:
    found = {(stack, quant): gpus for stack, quant, gpus in available_profiles()}
    expected = {"vllm": ("awq", "gptq", "fp16"), "tgi": ("awq", "gptq", "fp16"),
                "exllamav2": ("exl2", "gptq", "fp16")}  # fmt: skip
    for stack, quants in expected.items():
        for quant in quants:
            assert set(found[stack, quant]) >= {"h100", "a100", "l4"}, (stack, quant)


def test_profiles_are_plausible_for_an_8b_model_on_h100() -> None:
    fp16, awq, gptq = (load_profile("vllm", q, "h100") for q in ("fp16", "awq", "gptq"))
    # 4-bit reads fewer weight bytes per step but pays for dequantisation per sequence.
    assert awq.decode_step_base_ms < gptq.decode_step_base_ms < fp16.decode_step_base_ms
    assert fp16.decode_step_per_seq_ms < awq.decode_step_per_seq_ms
    assert awq.decode_step_per_seq_ms != gptq.decode_step_per_seq_ms
    for quant in ("fp16", "awq", "gptq"):
        assert 15.0 <= _step_ms("vllm", quant, 64) <= 25.0
    for p in (fp16, awq, gptq):
        assert 0.05 <= p.prefill_ms_per_token <= 0.1
        assert "simulated" in p.source.lower()


@pytest.mark.parametrize(
    ("args", "listed"),
    [
        (("tensorrt", "awq", "h100"), "exllamav2, tgi, vllm"),
        (("vllm", "exl2", "h100"), "awq, fp16, gptq"),
        (("vllm", "awq", "b200"), "h100"),
    ],
)
def test_unknown_names_list_the_valid_choices(args: tuple[str, str, str], listed: str) -> None:
    with pytest.raises(SimConfigError, match=listed):
        load_profile(*args)


def test_settings_forbid_unknown_keys_and_derive_the_model_name() -> None:
    assert SimSettings().served_model_name == "sim/llama-3.1-8b-instruct-awq"
    assert SimSettings(quant="gptq").served_model_name == "sim/llama-3.1-8b-instruct-gptq"
    assert SimSettings(model="m").served_model_name == "m"
    with pytest.raises(ValidationError):
        SimSettings.model_validate({"qaunt": "awq"})
    with pytest.raises(ValidationError):
        SimSettings.model_validate({"stack": "tensorrt"})


def test_stand_in_tokenizer() -> None:
    assert count_tokens("Hello, world!") == 4
    assert count_tokens("") == 0
    messages = [("system", "Be brief."), ("user", "Hi there")]
    assert chat_prompt_tokens(messages) == len(chat_token_ids(messages)) == 3 + 2 * 4 + 5
    assert list(itertools.islice(words(7), 5)) == list(itertools.islice(words(7), 5))
    assert all(w.startswith(" ") and " " not in w[1:] for w in itertools.islice(words(1), 50))


@pytest.mark.parametrize(
    ("stack", "quants"),
    [("vllm", ("awq", "gptq")), ("tgi", ("awq", "gptq")), ("exllamav2", ("exl2", "gptq"))],
)
@pytest.mark.parametrize("gpu", ["h100", "a100", "l4"])
def test_quantized_is_faster_at_batch_1_and_the_gap_shrinks_with_batch(
    stack: str, quants: tuple[str, ...], gpu: str
) -> None:
    fp16 = load_profile(stack, "fp16", gpu)

    def step(p: EngineProfile, batch: int) -> float:
        return p.decode_step_base_ms + p.decode_step_per_seq_ms * batch

    for quant in quants:
        q = load_profile(stack, quant, gpu)
        assert step(q, 1) < step(fp16, 1), "4-bit reads fewer weight bytes: faster at batch 1"
        speedup_1 = step(fp16, 1) / step(q, 1)
        speedup_64 = step(fp16, 64) / step(q, 64)
        assert speedup_64 < speedup_1, "dequantisation cost grows with the batch"
        if gpu == "l4":  # 24 GB: FP16 weights (~16 GB) leave far less room for KV cache
            assert fp16.kv_cache_tokens < q.kv_cache_tokens / 2
