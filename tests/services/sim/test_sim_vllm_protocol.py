"""`ContentEvents` (services/sim/vllm_protocol.py): the per-token fast path writes exactly
the bytes of the chunk builders, with and without vLLM's per-chunk usage."""

from __future__ import annotations

import pytest

from services.openai_wire import VLLM_033, chat_chunk, completion_chunk, response_head, sse
from services.sim.vllm_protocol import ContentEvents, chat_usage, usage


@pytest.mark.parametrize("chat", [False, True])
@pytest.mark.parametrize("continuous", [False, True])
@pytest.mark.parametrize(
    ("model", "request_id"),
    [
        ("sim/llama-3.1-8b-instruct-awq", None),
        # a model name and a client's request id holding what the template uses inside
        ("odd%model%d%s", "id-1000000007-1000000009-%d"),
    ],
)
def test_fast_events_are_the_builders_bytes(
    chat: bool, continuous: bool, model: str, request_id: str | None
) -> None:
    obj = "chat.completion.chunk" if chat else "text_completion"
    head = response_head("chatcmpl" if chat else "cmpl", obj, model, request_id)
    prompt = 7 if continuous else None
    fast = ContentEvents(head, chat, prompt)
    for n, text in enumerate([" word", ' "quoted"\n', " naïve ✓", "%d%s", ""], start=1):
        use = None
        if continuous:
            use = (chat_usage if chat else usage)(7, n)
        if chat:
            slow = chat_chunk(head, {"content": text}, None, use=use, style=VLLM_033)
        else:
            slow = completion_chunk(head, text, None, use=use, style=VLLM_033)
        assert fast(text, n) == sse(slow)
