"""The shared stream loop (loadtest/clients/base.py): where stamps come from, how the bytes
of one read become events, and the decoder that reads only the fields a client needs.

Bodies are the bytes each stack writes (STACKS.md: vLLM `data: x\\n\\n`, TGI `data:x\\n\\n`
with keep-alive comments, TabbyAPI `data: x\\r\\n\\r\\n`); vLLM 0.33's chunks come from the
simulator's own builders, null fields and all.
"""

from __future__ import annotations

import json

import pytest

from loadtest.clients.base import RequestContext
from loadtest.clients.openai import OpenAIClient
from loadtest.clients.tgi import TgiClient
from loadtest.config import EndpointSpec, WorkloadConfig
from loadtest.records import Outcome, RequestRecord
from loadtest.workload import GenRequest
from services.openai_wire import VLLM_033, chat_chunk, completion_chunk, response_head, sse, usage
from tests.loadtest.fakes import ScriptedClock, ScriptedResponse, ScriptedTransport

MS = 1_000_000
US = 1_000
REQUEST = GenRequest(prompt="hello there", prompt_tokens=2, max_tokens=3)
HEAD = response_head("cmpl", "text_completion", "m", "r1")


def vllm_token(text: str, n: int, finish: str | None = None) -> bytes:
    """One vLLM 0.33 completion event with per-chunk usage (continuous_usage_stats)."""
    return sse(completion_chunk(HEAD, text, finish, use=usage(2, n), style=VLLM_033))


def vllm_stream() -> list[bytes]:
    return [vllm_token(" a", 1), vllm_token(" b", 2), vllm_token(" c", 3, "length"),
            b"data: [DONE]\n\n"]  # fmt: skip


def run(
    lines: list[tuple[int, bytes]],
    *,
    client: type[OpenAIClient | TgiClient] = OpenAIClient,
    endpoint: str = "completions",
    **response: object,
) -> RequestRecord:
    clock = ScriptedClock(now_ns=0)
    scripted = ScriptedResponse(clock, lines, **response)  # type: ignore[arg-type]
    transport = ScriptedTransport(clock, scripted, headers_at_ns=1 * MS)
    stack = "tgi" if client is TgiClient else "vllm"
    made = client(
        transport,
        EndpointSpec(name="t", stack=stack, model="m"),  # type: ignore[arg-type]
        WorkloadConfig(endpoint=endpoint),  # type: ignore[arg-type]
        clock_ns=clock,
    )
    return made.execute(REQUEST, RequestContext("t", 0, "concurrency", 1, 0))


def event_ns(record: RequestRecord) -> list[int]:
    """Each token event's stamp, rebuilt from the record (one token per event here)."""
    assert record.first_token_ns is not None
    stamps = [record.first_token_ns]
    for gap_ms in record.itl_ms:
        stamps.append(stamps[-1] + round(gap_ms * MS))
    return stamps


# --- where stamps come from ---------------------------------------------------------------


def test_kernel_receive_stamps_are_used_rather_than_the_moment_of_the_read() -> None:
    """A generator busy for 4 ms before each read still stamps each token when it arrived."""
    arrivals = [20 * MS + 7 * US, 30 * MS + 11 * US, 40 * MS + 13 * US, 41 * MS]
    lines = list(zip(arrivals, vllm_stream(), strict=True))
    record = run(lines, read_lag_ns=4 * MS, kernel_stamps=True)
    assert record.outcome is Outcome.OK
    assert event_ns(record) == arrivals[:3]
    assert record.end_ns == arrivals[3]
    assert record.read_lag_ms == 4.0  # how busy the generator was, kept beside the stamps


def test_without_kernel_stamps_a_busy_generator_stamps_at_the_read() -> None:
    arrivals = [20 * MS, 30 * MS, 40 * MS, 41 * MS]
    lines = list(zip(arrivals, vllm_stream(), strict=True))
    record = run(lines, read_lag_ns=4 * MS, kernel_stamps=False)
    assert event_ns(record) == [at + 4 * MS for at in arrivals[:3]]
    assert record.read_lag_ms is None  # unknown without the kernel's stamp


def test_a_kernel_stamp_is_never_earlier_than_the_request() -> None:
    """A clock step between arrival and read must not put a token before `sent`."""
    lines = list(zip([20 * MS, 30 * MS, 40 * MS, 41 * MS], vllm_stream(), strict=True))
    record = run(lines, read_lag_ns=10**12, kernel_stamps=True)
    assert record.first_token_ns is not None and record.sent_ns is not None
    assert record.first_token_ns >= record.sent_ns


def test_events_that_arrive_in_one_read_share_its_stamp() -> None:
    events = vllm_stream()
    lines = [(20 * MS, events[0] + events[1]), (35 * MS, events[2] + events[3])]
    record = run(lines)
    assert event_ns(record) == [20 * MS, 20 * MS, 35 * MS]
    assert record.itl_ms == [0.0, 15.0]
    assert record.end_ns == 35 * MS and record.output_tokens == 3


def test_an_event_split_across_reads_is_stamped_when_its_last_byte_arrives() -> None:
    first, second, third, done = vllm_stream()
    lines = [
        (20 * MS, first[:40]),
        (21 * MS, first[40:] + second[:-1]),  # the second event lacks its last "\n"
        (30 * MS, second[-1:]),
        (40 * MS, third + done),
    ]
    record = run(lines)
    assert event_ns(record) == [21 * MS, 21 * MS, 40 * MS]  # "data: ...\n" ends an event line


# --- framing of every stack ---------------------------------------------------------------


def _openai_chunk(text: str, finish: str | None = None) -> dict[str, object]:
    choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
    return {"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "m",
            "choices": [choice]}  # fmt: skip


@pytest.mark.parametrize(
    ("prefix", "end"),
    [
        (b"data: ", b"\n\n"),  # vLLM, our ExLlamaV2 server
        (b"data:", b"\n\n"),  # TGI's OpenAI routes (axum: no space)
        (b"data: ", b"\r\n\r\n"),  # TabbyAPI (sse-starlette)
    ],
)
def test_every_stacks_framing_gives_the_same_record(prefix: bytes, end: bytes) -> None:
    chunks = [_openai_chunk(" a"), _openai_chunk(" b"), _openai_chunk(" c", "length")]
    body = [prefix + json.dumps(c).encode() + end for c in chunks] + [prefix + b"[DONE]" + end]
    keepalive = b":" + end[: len(end) // 2]
    other_fields = b"event: message" + end[: len(end) // 2] + b"id: 1" + end[: len(end) // 2]
    lines = [
        (5 * MS, keepalive),
        (20 * MS, other_fields + body[0]),
        (30 * MS, body[1]),
        (40 * MS, keepalive + body[2]),
        (41 * MS, body[3]),
    ]
    record = run(lines)
    assert record.outcome is Outcome.OK, record.error
    assert event_ns(record) == [20 * MS, 30 * MS, 40 * MS]
    assert (record.output_tokens, record.token_count_source, record.end_ns) == (
        3,
        "events",
        41 * MS,
    )


@pytest.mark.parametrize(
    "where",
    ["every chunk", "last content chunk", "usage chunk"],
)
def test_usage_is_read_wherever_the_server_puts_it(where: str) -> None:
    def chunk(text: str, n: int, finish: str | None = None, *, with_usage: bool) -> bytes:
        use = usage(5, n) if with_usage else None
        return sse(completion_chunk(HEAD, text, finish, use=use, style=VLLM_033))

    every = where == "every chunk"
    lines = [
        chunk(" a", 1, with_usage=every),
        chunk(" b", 2, with_usage=every),
        chunk(" c", 3, "length", with_usage=where != "usage chunk"),
    ]
    if where == "usage chunk":
        lines.append(sse({**HEAD, "choices": [], "usage": usage(5, 3)}))
    lines.append(b"data: [DONE]\n\n")
    record = run([(10 * MS * (i + 1), line) for i, line in enumerate(lines)])
    assert record.outcome is Outcome.OK
    assert (record.output_tokens, record.prompt_tokens, record.token_count_source) == (
        3,
        5,
        "usage",
    )
    assert record.events == 3


def test_vllm_chat_chunks_with_their_null_fields_decode() -> None:
    head = response_head("chatcmpl", "chat.completion.chunk", "m", "r1")
    role = chat_chunk(head, {"role": "assistant", "content": ""}, None, style=VLLM_033, role=True)
    tokens = [
        chat_chunk(head, {"content": word}, finish, use=usage(2, n), style=VLLM_033)
        for n, (word, finish) in enumerate([(" a", None), (" b", None), (" c", "length")], 1)
    ]
    body = [sse(role), *(sse(t) for t in tokens), b"data: [DONE]\n\n"]
    record = run([(10 * MS * (i + 1), b) for i, b in enumerate(body)], endpoint="chat")
    assert record.outcome is Outcome.OK
    assert event_ns(record) == [20 * MS, 30 * MS, 40 * MS]  # the role chunk is not a token
    assert record.output_tokens == 3


# --- errors and what is not an event ------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (b'data: {"error":{"message":"boom","type":"InternalServerError","code":500}}\n\n',
         "boom"),  # vLLM mid-stream
        (b'data:{"error":{"message":"overloaded","http_status_code":422}}\n\n',
         "overloaded"),  # TGI's OpenAI routes
        (b'data: {"error":{"message":"CUDA OOM","trace":null}}\r\n\r\n', "CUDA OOM"),  # Tabby
        (b'data: {"error":null}\n\n', "None"),  # present at all: still an error event
    ],
)  # fmt: skip
def test_error_events_of_every_stack(event: bytes, message: str) -> None:
    record = run([(20 * MS, vllm_token(" a", 1)), (30 * MS, event + b"data: [DONE]\n\n")])
    assert record.outcome is Outcome.SERVER_ERROR_EVENT
    assert message in (record.error or "")
    assert record.output_tokens == 1


def test_tgi_error_event_names_its_type() -> None:
    event = b'data:{"error":"Input validation error","error_type":"validation"}\n\n'
    record = run([(5 * MS, event)], client=TgiClient)
    assert record.outcome is Outcome.SERVER_ERROR_EVENT
    assert record.error == "validation: Input validation error"


@pytest.mark.parametrize("finish", ["abort", "error"])
def test_an_engine_abort_mid_stream_is_aborted(finish: str) -> None:
    body = [vllm_token(" a", 1), vllm_token("", 1, finish),
            sse({**HEAD, "choices": [], "usage": usage(2, 1)}), b"data: [DONE]\n\n"]  # fmt: skip
    record = run([(10 * MS * (i + 1), b) for i, b in enumerate(body)])
    assert record.outcome is Outcome.ABORTED
    assert f"finish_reason {finish!r}" in (record.error or "")


@pytest.mark.parametrize(
    ("event", "says"),
    [
        (b'data: {"id":"cmpl-\n\n', "not JSON"),  # what the simulator injects
        (b"data: {not json}\n\n", "not JSON"),
        (b"data: [1, 2]\n\n", "unexpected event"),  # JSON, but not an object
        (b'data: "text"\n\n', "unexpected event"),
        (b"data:\n\n", "not JSON"),
        (b'data: {"choices":{"text":"a"}}\n\n', "unexpected event"),  # choices not a list
        (b'data: {"choices":[{"delta":"a"}]}\n\n', "unexpected event"),
    ],
)
def test_malformed_events_are_malformed(event: bytes, says: str) -> None:
    record = run([(20 * MS, vllm_token(" a", 1)), (30 * MS, event + b"data: [DONE]\n\n")])
    assert record.outcome is Outcome.MALFORMED_EVENT
    assert (record.error or "").startswith(says)


def test_leading_spaces_before_the_json_are_still_json() -> None:
    event = b"data:  " + vllm_token(" a", 1)[len(b"data: ") :]
    record = run([(20 * MS, event), (30 * MS, b"data:  [DONE]\n\n")])
    assert record.outcome is Outcome.ABORTED  # 1 of 3 pinned tokens, but a proper stream
    assert record.end_ns == 30 * MS and record.output_tokens == 1


def test_an_html_page_with_status_200_is_not_an_event_stream() -> None:
    page = b"<!DOCTYPE html><html><body>Welcome to nginx!</body></html>"
    record = run([(20 * MS, page)], content_type="text/html; charset=utf-8")
    assert record.outcome is Outcome.MALFORMED_EVENT
    assert record.error == "not an event stream (content-type text/html; charset=utf-8)"
    assert record.http_status == 200


@pytest.mark.parametrize("content_type", ["text/event-stream; charset=utf-8", None])
def test_an_event_stream_or_an_unlabelled_body_is_read(content_type: str | None) -> None:
    lines = list(zip([20 * MS, 30 * MS, 40 * MS, 41 * MS], vllm_stream(), strict=True))
    assert run(lines, content_type=content_type).outcome is Outcome.OK
