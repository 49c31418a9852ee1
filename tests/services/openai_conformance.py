"""The official `openai` client's conformance checks, shared by every OpenAI-compatible server
we ship: the vLLM simulator and our ExLlamaV2 server (over its simulated and its fake engine).

Each check takes the server's base URL and what that server counts for the fixed prompts, so
exactly the same assertions run against each of them.
"""

from __future__ import annotations

import openai

__all__ = ["PROMPT", "check_chat", "check_completions"]

PROMPT = "The quick brown fox"
MESSAGES = [{"role": "user", "content": "Hello!"}]


def _client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)


def check_completions(url: str, model: str, prompt_tokens: int) -> None:
    """A streamed completion with `include_usage`: 5 text chunks, `length`, a usage chunk."""
    client = _client(url)
    assert model in [m.id for m in client.models.list()]
    chunks = list(
        client.completions.create(
            model=model,
            prompt=PROMPT,
            max_tokens=5,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    texts = [c.choices[0].text for c in chunks if c.choices]
    assert len(texts) == 5 and all(t.startswith(" ") for t in texts)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (
        prompt_tokens,
        5,
    )


def check_chat(url: str, model: str, prompt_tokens: int) -> None:
    """A streamed chat (role-only first delta, 4 content deltas, usage) and a plain reply."""
    client = _client(url)
    chunks = list(
        client.chat.completions.create(
            model=model,
            messages=MESSAGES,  # type: ignore[arg-type]
            max_completion_tokens=4,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    first = chunks[0].choices[0].delta
    assert (first.role, first.content) == ("assistant", ""), "vLLM's role-only first chunk"
    contents = [c.choices[0].delta.content for c in chunks[1:] if c.choices]
    assert len(contents) == 4 and all(contents)
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == prompt_tokens + 4
    reply = client.chat.completions.create(
        model=model,
        messages=MESSAGES,  # type: ignore[arg-type]
        max_tokens=3,
    )
    assert reply.choices[0].finish_reason == "length" and reply.usage is not None
    assert reply.usage.completion_tokens == 3
