"""The simulated model: perplexity inflated by each profile's factor, greedy outputs that leave
FP16's at the profile's rate, and vLLM's prompt-scoring answers (echo, logprobs,
prompt_logprobs, /detokenize) built from it."""

from __future__ import annotations

import asyncio
import itertools
import math
import random
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from services.sim import SimSettings, build_app
from services.sim.config import QualityProfile
from services.sim.profiles import load_quality
from services.sim.textmodel import TextModel, text_model_for
from services.sim.tokens import token_ids


def _text_ids(n_words: int = 40_000) -> list[int]:
    rng = random.Random(3)
    return token_ids(" ".join(f"w{rng.randrange(5000)}" for _ in range(n_words)))


def _ppl(model: TextModel, ids: list[int], window: int = 512, stride: int = 256) -> float:
    nll, n, end = 0.0, 0, 0
    for begin in range(0, len(ids), stride):
        scored = model.score(ids[begin : begin + window])
        new = min(begin + window, len(ids)) - end
        tail = [t.logprob for t in scored[len(scored) - new :] if t.logprob is not None]
        nll, n, end = nll - sum(tail), n + len(tail), min(begin + window, len(ids))
        if end == len(ids):
            break
    return math.exp(nll / n)


def test_perplexity_is_fp16_times_the_profile_factor() -> None:
    ids = _text_ids()
    fp16 = _ppl(text_model_for(SimSettings(stack="vllm", quant="fp16")), ids)
    assert 5.0 < fp16 < 6.2, "near Llama-2-7B's WikiText-2 level (5.47)"
    for stack, quant in (("vllm", "awq"), ("tgi", "gptq"), ("exllamav2", "exl2")):
        factor = load_quality(stack, quant).ppl_factor
        ppl = _ppl(text_model_for(SimSettings(stack=stack, quant=quant)), ids)
        assert ppl / fp16 == pytest.approx(factor, abs=0.004), (stack, quant)


def test_settings_override_the_profile_and_the_seed_moves_the_noise_only() -> None:
    ids = _text_ids(8000)
    fp16 = _ppl(text_model_for(SimSettings(quant="fp16")), ids)
    worse = _ppl(text_model_for(SimSettings(quant="awq", ppl_factor=1.10)), ids)
    assert worse / fp16 == pytest.approx(1.10, abs=0.01)
    a = text_model_for(SimSettings(quant="awq", seed=1)).score(ids[:50])
    b = text_model_for(SimSettings(quant="awq", seed=2)).score(ids[:50])
    assert [t.logprob for t in a] != [t.logprob for t in b]


def test_scores_do_not_depend_on_the_stack_or_the_process() -> None:
    ids = _text_ids(500)
    vllm = text_model_for(SimSettings(stack="vllm", quant="fp16")).score(ids, top_n=2)
    tgi = text_model_for(SimSettings(stack="tgi", quant="fp16")).score(ids, top_n=2)
    assert vllm == tgi
    assert vllm[0].logprob is None and all(t.logprob is not None for t in vllm[1:])
    assert all(t.top[0].logprob >= t.logprob for t in vllm[1:]), "top candidate is likeliest"


def test_greedy_output_leaves_fp16_at_the_profile_rate() -> None:
    fp16 = TextModel(QualityProfile())
    quant = TextModel(QualityProfile(ppl_factor=1.02, disagreement_rate=0.05), salt=9)
    prompts = [token_ids(f"prompt number {k} about w{k * 7} things") for k in range(400)]
    firsts = []
    for ids in prompts:
        ref = list(itertools.islice(fp16.greedy(ids[-2:], len(ids)), 32))
        assert ref == list(itertools.islice(fp16.greedy(ids[-2:], len(ids)), 32)), "deterministic"
        out = list(itertools.islice(quant.greedy(ids[-2:], len(ids)), 32))
        diverged = [k for k, (x, y) in enumerate(zip(out, ref, strict=True)) if x != y]
        firsts.append(diverged[0] if diverged else None)
        if diverged:
            assert out[diverged[0] :] != ref[diverged[0] :]
    at_first_token = sum(f == 0 for f in firsts) / len(firsts)
    assert at_first_token == pytest.approx(0.05, abs=0.025), "distinct contexts: the rate"
    match = sum(f is None for f in firsts) / len(firsts)
    assert 0.05 < match < 0.6, "some outputs keep FP16's 32 tokens, most do not"
    assert all(f is not None and 0 <= f < 32 for f in firsts if f is not None)


def _vllm(fn: Any, **settings: Any) -> Any:
    async def main() -> Any:
        sim = SimSettings.model_validate(
            {"stack": "vllm", "quant": "fp16", "timing": "fixed", "ttft_ms": 1, "itl_ms": 1}
            | settings
        )
        async with TestClient(TestServer(build_app(sim))) as client:
            return await fn(client)

    return asyncio.run(main())


def test_vllm_echo_with_max_tokens_0_scores_the_prompt_as_vllm_does() -> None:
    async def fn(client: Any) -> Any:
        body = {"prompt": "The lamp was lit at dusk .", "echo": True, "max_tokens": 0,
                "logprobs": 1, "return_tokens_as_token_ids": True}  # fmt: skip
        resp = await client.post("/v1/completions", json=body)
        return resp.status, await resp.json()

    status, data = _vllm(fn)
    assert status == 200, data
    choice = data["choices"][0]
    ids = token_ids("The lamp was lit at dusk .")
    assert choice["text"] == "The lamp was lit at dusk .", "the prompt alone"
    lp = choice["logprobs"]
    assert lp["tokens"] == [f"token_id:{i}" for i in ids]
    assert lp["token_logprobs"][0] is None and all(v < 0 for v in lp["token_logprobs"][1:])
    assert lp["top_logprobs"][0] is None and all(1 <= len(t) <= 2 for t in lp["top_logprobs"][1:])
    lengths = [len(t) for t in lp["tokens"]]
    assert lp["text_offset"] == [sum(lengths[:k]) for k in range(len(ids))]
    prompt = choice["prompt_logprobs"]
    assert prompt[0] is None and next(iter(prompt[1])) == str(ids[1]), "the prompt token first"
    assert prompt[1][str(ids[1])]["logprob"] == lp["token_logprobs"][1]
    assert data["usage"]["completion_tokens"] == 1, "vLLM samples one token it does not show"


def test_vllm_refuses_what_vllm_refuses_and_detokenizes_what_it_tokenized() -> None:
    async def fn(client: Any) -> Any:
        zero = await client.post("/v1/completions", json={"prompt": "a b", "max_tokens": 0})
        stream = await client.post(
            "/v1/completions", json={"prompt": "a b", "prompt_logprobs": 1, "stream": True}
        )
        ids = await (await client.post("/tokenize", json={"prompt": "Halvering sat"})).json()
        back = await client.post("/detokenize", json={"tokens": ids["tokens"]})
        unknown = await client.post("/detokenize", json={"tokens": [123456]})
        return zero.status, await zero.json(), stream.status, await back.json(), unknown.status

    zero, body, stream, back, unknown = _vllm(fn)
    assert zero == 400 and "max_tokens must be at least 1, got 0" in body["error"]["message"]
    assert stream == 400 and back == {"prompt": "Halvering sat"} and unknown == 400


def test_greedy_text_is_the_same_on_fp16_simulators_of_any_seed_and_stack() -> None:
    async def vllm(client: Any) -> str:
        body = {"prompt": "Once upon a time", "max_tokens": 8, "temperature": 0}
        data = await (await client.post("/v1/completions", json=body)).json()
        return str(data["choices"][0]["text"])

    async def tgi(client: Any) -> str:
        body = {"inputs": "Once upon a time", "parameters": {"max_new_tokens": 8}}
        return str((await (await client.post("/generate", json=body)).json())["generated_text"])

    first = _vllm(vllm)
    assert len(first.split()) == 8
    assert first == _vllm(vllm, seed=5) == _vllm(tgi, stack="tgi")


def test_the_cached_prefix_of_a_hash_gives_the_same_hash() -> None:
    """Greedy tokens mix in only their position onto a kept (kind, prev2, prev1) prefix."""
    from services.sim.textmodel import _mix, _mixed, _step

    for values in [(3, 1, 2, 99), (5, 2**33 + 1, 7, 4096), (0, 0, 0, 0, 1)]:
        assert _step(_mixed(*values[:-1]), values[-1]) == _mix(*values)
