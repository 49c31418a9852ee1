"""Prompt log-probs on the ExLlamaV2 server: the logits arithmetic (a fake model's logits,
checked against a direct log-softmax) and the completions API that exposes it (vLLM's `echo`
with `max_tokens` 0, `logprobs`, `prompt_logprobs`)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from services.exllamav2.scoring import score_prompt
from tests.services.exllamav2.conftest import Client, FakeEngine, run_app

VOCAB = 50


def _fake_logits(ids: list[int]) -> np.ndarray:
    """Logits of a made-up model: position i prefers token (ids[i] * 7 + 3) % VOCAB."""
    rng = np.random.default_rng(len(ids))
    logits = rng.normal(size=(1, len(ids), VOCAB)).astype(np.float32)
    for i, token in enumerate(ids):
        logits[0, i, (token * 7 + 3) % VOCAB] += 4.0
    return logits


def test_score_prompt_is_the_log_softmax_at_the_next_token() -> None:
    ids = [int(x) for x in np.random.default_rng(1).integers(0, VOCAB, size=600)]
    calls: list[list[int]] = []

    def forward(seq: Any) -> np.ndarray:
        calls.append(list(seq))
        return _fake_logits(list(seq))

    pieces = [f"p{i}" for i in range(VOCAB)]
    scored = score_prompt(forward, ids, 3, pieces)
    assert calls == [ids], "one forward pass over the whole prompt"
    logits = _fake_logits(ids)[0].astype(np.float64)
    assert scored[0].logprob is None and scored[0].text == pieces[ids[0]]
    for i in (1, 2, 255, 256, 257, 599):  # across the 256-position slices
        row = logits[i - 1]
        expected = row - (row.max() + math.log(np.exp(row - row.max()).sum()))
        token = scored[i]
        assert token.token_id == ids[i] and token.text == pieces[ids[i]]
        assert token.logprob == pytest.approx(expected[ids[i]], abs=1e-5)
        assert token.rank == 1 + int((expected > expected[ids[i]]).sum())
        best = np.argsort(-expected)[:3]
        assert [c.token_id for c in token.top] == best.tolist()
        assert [c.logprob for c in token.top] == pytest.approx(expected[best].tolist(), abs=1e-5)


def test_score_prompt_of_one_token_needs_no_forward_pass() -> None:
    def forward(seq: Any) -> np.ndarray:
        raise AssertionError("nothing to score")

    scored = score_prompt(forward, [5], 2, ["x"] * VOCAB)
    assert [(t.token_id, t.logprob) for t in scored] == [(5, None)]


def _post(body: dict[str, Any], engine: FakeEngine | None = None) -> tuple[int, Any, FakeEngine]:
    fake = engine or FakeEngine()

    async def fn(client: Client, registry: Any, engine: FakeEngine) -> tuple[int, Any]:
        resp = await client.post("/v1/completions", json=body)
        return resp.status, await resp.json()

    status, data = run_app(fn, fake)
    return status, data, fake


def test_echo_with_max_tokens_0_returns_the_scored_prompt_and_generates_nothing() -> None:
    body = {"prompt": [1, 5, 9, 2], "echo": True, "max_tokens": 0, "logprobs": 1,
            "prompt_logprobs": 1, "return_tokens_as_token_ids": True}  # fmt: skip
    status, data, fake = _post(body)
    assert status == 200, data
    assert fake.jobs == [] and fake.scored == [[1, 5, 9, 2]]
    choice = data["choices"][0]
    assert choice["text"] == " t1 t5 t9 t2", "ids prompt: echoed as the tokens' text"
    lp = choice["logprobs"]
    assert lp["tokens"] == ["token_id:1", "token_id:5", "token_id:9", "token_id:2"]
    assert lp["token_logprobs"] == [None, -0.1, -0.2, -0.3]
    assert lp["top_logprobs"][0] is None
    assert lp["top_logprobs"][1] == {"token_id:5": -0.1, "token_id:7": -0.01}, "token, then top 1"
    assert lp["text_offset"] == [0, 10, 20, 30], "running length of the token strings"
    assert choice["prompt_logprobs"][0] is None
    assert choice["prompt_logprobs"][2] == {
        "9": {"logprob": -0.2, "rank": 2, "decoded_token": " t9"},
        "7": {"logprob": -0.01, "rank": 1, "decoded_token": "c7"},
    }
    assert data["usage"]["prompt_tokens"] == 4 and data["usage"]["completion_tokens"] == 0


def test_a_text_prompt_is_echoed_as_sent() -> None:
    status, data, fake = _post({"prompt": "a bb ccc", "echo": True, "max_tokens": 0,
                                "logprobs": 0})  # fmt: skip
    assert status == 200, data
    assert data["choices"][0]["text"] == "a bb ccc"
    assert fake.scored == [[1, 1, 2, 3]], "BOS + the fake tokenizer's ids"
    assert data["choices"][0]["logprobs"]["tokens"][1] == " t1"
    assert "prompt_logprobs" not in data["choices"][0]


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ({"echo": True, "max_tokens": 0, "logprobs": 1, "stream": True}, "streaming"),
        ({"logprobs": 1, "max_tokens": 4}, "scores prompts only"),
        ({"echo": True, "max_tokens": 3}, "scores prompts only"),
        ({"echo": True, "max_tokens": 0, "logprobs": 1, "prompt": list(range(40))}, "at most 32"),
        ({"max_tokens": 0}, "max_tokens must be at least 1"),
    ],
)
def test_what_cannot_be_scored_is_one_clear_400(extra: dict[str, Any], needle: str) -> None:
    status, data, fake = _post({"prompt": "a b", **extra})
    assert status == 400 and needle in data["error"]["message"], data
    assert fake.jobs == [], "nothing was generated"
