"""The simulators' limits are what docker-compose.yml deploys, and they refuse, lower or split
requests as the real servers do (vLLM 0.33 `serve/utils/api_utils.py::get_max_tokens`; TGI
`router/src/validation.rs`, `infer/mod.rs`, `lib.rs`; vLLM `engine/arg_utils.py`)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from services.sim import SimSettings, load_profile
from services.sim.config import (
    COMPOSE_MAX_INPUT_TOKENS,
    COMPOSE_MAX_MODEL_LEN,
    COMPOSE_MAX_NUM_SEQS,
    COMPOSE_TGI_MAX_CONCURRENT_REQUESTS,
)
from services.sim.engine import BatchingEngine
from services.sim.engine_factory import build_engine
from tests.procs import REPO_ROOT
from tests.services.sim.test_sim_tgi_app import Client, events, run_tgi

COMPOSE = (REPO_ROOT / "docker-compose.yml").read_text()
ENV_EXAMPLE = (REPO_ROOT / ".env.example").read_text()


def _compose_default(variable: str) -> int:
    """Every `${VARIABLE:-default}` in docker-compose.yml; they must agree."""
    found = set(re.findall(r"\$\{" + variable + r":-(\d+)\}", COMPOSE))
    assert len(found) == 1, (variable, found)
    return int(found.pop())


def _env_example(variable: str) -> int:
    [value] = re.findall(rf"^{variable}=(\d+)$", ENV_EXAMPLE, flags=re.MULTILINE)
    return int(value)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MAX_MODEL_LEN", COMPOSE_MAX_MODEL_LEN),
        ("MAX_INPUT_TOKENS", COMPOSE_MAX_INPUT_TOKENS),
        ("MAX_NUM_SEQS", COMPOSE_MAX_NUM_SEQS),
        ("TGI_MAX_CONCURRENT_REQUESTS", COMPOSE_TGI_MAX_CONCURRENT_REQUESTS),
    ],
)
def test_simulator_defaults_are_what_compose_deploys(variable: str, value: int) -> None:
    assert _compose_default(variable) == value
    assert _env_example(variable) == value


def test_the_tgi_simulator_reports_compose_limits() -> None:
    async def fn(client: Client) -> Any:
        return await (await client.get("/info")).json()

    info = run_tgi(fn)
    assert SimSettings().max_model_len == COMPOSE_MAX_MODEL_LEN
    assert (info["max_input_tokens"], info["max_total_tokens"]) == (
        COMPOSE_MAX_INPUT_TOKENS,
        COMPOSE_MAX_MODEL_LEN,
    )
    assert info["max_concurrent_requests"] == COMPOSE_TGI_MAX_CONCURRENT_REQUESTS


def test_tgi_openai_routes_without_max_tokens_generate_up_to_the_context() -> None:
    """lib.rs passes `max_tokens` through (no default of 100): validation.rs then allows
    max_total_tokens - input."""

    async def fn(client: Client) -> tuple[Any, Any]:
        chat = {"model": "tgi", "messages": [{"role": "user", "content": "Hi"}]}
        reply = await (await client.post("/v1/chat/completions", json=chat)).json()
        text = await (await client.post("/v1/completions", json={"prompt": "a b"})).json()
        return reply["usage"], text["usage"]

    chat, completion = run_tgi(fn, max_model_len=64, itl_ms=0.0)
    assert chat == {"prompt_tokens": 8, "completion_tokens": 56, "total_tokens": 64}
    assert completion == {"prompt_tokens": 2, "completion_tokens": 62, "total_tokens": 64}


def test_tgi_accepts_empty_stream_options_and_refuses_null() -> None:
    """lib.rs: `#[serde(default)] stream_options: StreamOptions` with a defaulted
    `include_usage`: `{}` is a stream without the usage chunk; `null` is not a StreamOptions."""

    async def fn(client: Client) -> tuple[int, bytes, int]:
        chat: dict[str, Any] = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
        chat |= {"stream": True}
        ok = await client.post("/v1/chat/completions", json=chat | {"stream_options": {}})
        bad = await client.post("/v1/chat/completions", json=chat | {"stream_options": None})
        return ok.status, await ok.read(), bad.status

    status, raw, refused = run_tgi(fn)
    assert status == 200 and refused == 422
    got = events(raw)
    assert len(got) == 3 and got[-1] == b"data:[DONE]\n\n", "2 tokens, no usage chunk, [DONE]"


def test_tgi_generates_past_1024_tokens_in_re_queued_segments() -> None:
    """validation.rs checks input + min(max_new_tokens, 1024) and hands the backend 1024;
    infer/mod.rs re-validates and re-queues the request (its text appended to the input) while
    fewer than max_new_tokens were generated: 1500 asked is 1024 + 1024 = 2048 generated."""

    async def fn(client: Client) -> tuple[Any, str]:
        body = {"inputs": "a b", "parameters": {"max_new_tokens": 1500, "details": True}}
        out = await (await client.post("/generate", json=body)).json()
        return out, await (await client.get("/metrics")).text()

    out, metrics = run_tgi(fn, itl_ms=0.0, ttft_ms=0.0)
    assert out["details"]["generated_tokens"] == 2048
    assert "\ntgi_request_max_new_tokens_count 2\n" in metrics, "validated once per segment"
    assert "\ntgi_request_max_new_tokens_sum 2048\n" in metrics
    assert "\ntgi_request_success 1\n" in metrics


def test_vllm_lowers_max_tokens_to_fit_and_min_tokens_above_it_is_a_400(
    with_client: Any,
) -> None:
    async def fn(client: Client, _: Any) -> tuple[Any, tuple[int, Any]]:
        body = {"prompt": "w " * 10, "max_tokens": 30, "ignore_eos": True}
        fitted = await (await client.post("/v1/completions", json=body)).json()
        pinned = await client.post("/v1/completions", json=body | {"min_tokens": 30})
        return fitted["usage"], (pinned.status, await pinned.json())

    usage, (status, error) = with_client(fn, max_model_len=32)
    assert usage["prompt_tokens"] == 10 and usage["completion_tokens"] == 22, "32 - 10 left"
    assert status == 400 and error["error"]["type"] == "BadRequestError"
    assert error["error"]["message"] == (
        "min_tokens must be less than or equal to max_tokens=22, got 30."
    )


@pytest.mark.parametrize("quant", ["awq", "gptq", "fp16"])
def test_vllm_batching_defaults_per_gpu(quant: str) -> None:
    """get_batch_defaults: the API server batches 8192 tokens on H100-class GPUs, 2048 on
    A100 (named, to avoid the regression of PR #17885) and on smaller GPUs."""
    batched = {gpu: load_profile("vllm", quant, gpu).max_num_batched_tokens for gpu in
               ("h100", "a100", "l4")}  # fmt: skip
    assert batched == {"h100": 8192, "a100": 2048, "l4": 2048}


def test_the_batch_is_capped_at_compose_max_num_seqs() -> None:
    """Compose passes --max-num-seqs / --max-batch-size to every stack; the profile's own
    (upstream default) batch size applies only below it."""
    for stack, quant in (("vllm", "awq"), ("tgi", "awq"), ("exllamav2", "exl2")):
        profile = load_profile(stack, quant, "h100")
        engine = build_engine(SimSettings(stack=stack, quant=quant, gpu="h100"))
        assert isinstance(engine, BatchingEngine)
        assert engine.profile.max_num_seqs == min(profile.max_num_seqs, COMPOSE_MAX_NUM_SEQS)
        small = build_engine(SimSettings(stack=stack, quant=quant, gpu="h100", max_num_seqs=3))
        assert isinstance(small, BatchingEngine)
        assert small.profile.max_num_seqs == 3
