import json

import pytest

from loadtest.clients.openai import OpenAIClient, RequestContext
from loadtest.config import EndpointSpec, WorkloadConfig
from loadtest.records import Outcome
from loadtest.transport import TransportError
from loadtest.workload import GenRequest
from tests.loadtest.fakes import ScriptedClock, ScriptedResponse, ScriptedTransport

MS = 1_000_000
REQUEST = GenRequest(prompt="hello there", prompt_tokens=2, max_tokens=4)


def chat_chunk(content: str | None, *, role: bool = False, finish: str | None = None) -> bytes:
    delta: dict[str, str] = (
        {"role": "assistant", "content": ""} if role else {"content": content or ""}
    )
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [choice],
    }
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n"


def usage_chunk(prompt: int, completion: int) -> bytes:
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [],
        "usage": {
            "prompt_tokens": prompt,
            "total_tokens": prompt + completion,
            "completion_tokens": completion,
        },
    }
    return b"data: " + json.dumps(body).encode() + b"\n"


def make(
    lines: list[tuple[int, bytes]],
    *,
    mode: str = "concurrency",
    stack: str = "vllm",
    **response: object,
) -> tuple[OpenAIClient, ScriptedTransport, RequestContext]:
    clock = ScriptedClock(now_ns=10 * MS)
    transport = ScriptedTransport(
        clock,
        ScriptedResponse(clock, lines, **response),  # type: ignore[arg-type]
        headers_at_ns=15 * MS,
    )
    client = OpenAIClient(
        transport,
        EndpointSpec(name="t", stack=stack, model="m"),  # type: ignore[arg-type]
        WorkloadConfig(endpoint="chat"),
        clock_ns=clock,
        wall_clock=lambda: 1.0,
    )
    ctx = RequestContext(target="t", stage=0, mode=mode, load=1, scheduled_ns=4 * MS)
    return client, transport, ctx


def vllm_chat_stream() -> list[tuple[int, bytes]]:
    return [
        (20 * MS, chat_chunk(None, role=True)),  # role-only first delta: not a token
        (20 * MS, b"\n"),
        (50 * MS, chat_chunk("Hello")),
        (50 * MS, b"\n"),
        (60 * MS, chat_chunk(" big")),
        (75 * MS, chat_chunk(" wide")),
        (90 * MS, chat_chunk(" world", finish="length")),
        (91 * MS, usage_chunk(7, 4)),
        (92 * MS, b"data: [DONE]\n"),
    ]


def test_closed_loop_times_from_sent_and_skips_role_delta() -> None:
    client, transport, ctx = make(vllm_chat_stream())
    record = client.execute(REQUEST, ctx)
    assert record.outcome is Outcome.OK
    assert record.ttft_ms == pytest.approx(40.0, abs=1e-6)  # first content at 50, sent at 10
    assert record.e2e_ms == pytest.approx(82.0, abs=1e-6)
    assert record.tpot_ms == pytest.approx((90 - 50) / 3, abs=1e-6)
    assert record.itl_ms == pytest.approx([10.0, 15.0, 15.0], abs=1e-6)
    assert record.schedule_lag_ms == pytest.approx(6.0)
    assert (record.output_tokens, record.prompt_tokens, record.token_count_source) == (
        4,
        7,
        "usage",
    )
    assert record.events == 4
    assert transport.response is not None and transport.response.closed


def test_stamps_are_taken_before_yielding_to_other_streams() -> None:
    """Other streams' work while this one yields (3 ms each time) must not reach its stamps."""
    client, transport, ctx = make(vllm_chat_stream(), yield_ns=3 * MS)
    record = client.execute(REQUEST, ctx)
    assert record.first_byte_ns == 15 * MS
    assert record.ttft_ms == pytest.approx(40.0, abs=1e-6)
    assert record.itl_ms == pytest.approx([10.0, 15.0, 15.0], abs=1e-6)
    assert record.e2e_ms == pytest.approx(82.0, abs=1e-6)
    assert transport.response is not None
    assert transport.response.yields == 1 + len(vllm_chat_stream())  # headers, then each line


def test_open_loop_times_from_scheduled() -> None:
    client, _, ctx = make(vllm_chat_stream(), mode="rate")
    record = client.execute(REQUEST, ctx)
    assert record.ttft_ms == pytest.approx(46.0, abs=1e-6)  # first content at 50, scheduled at 4
    assert record.e2e_ms == pytest.approx(88.0, abs=1e-6)
    # e2e == ttft + sum(itl) + the wait for [DONE] after the last token
    assert record.e2e_ms == pytest.approx(record.ttft_ms + sum(record.itl_ms) + 2.0, abs=1e-6)


def test_request_body_pins_output_length_on_vllm_only() -> None:
    client, transport, ctx = make(vllm_chat_stream())
    client.execute(REQUEST, ctx)
    path, body, headers = transport.sent[0]
    sent = json.loads(body)
    assert path == "/v1/chat/completions"
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True, "continuous_usage_stats": True}
    assert sent["ignore_eos"] is True and sent["min_tokens"] == sent["max_tokens"] == 4
    assert sent["messages"] == [{"role": "user", "content": "hello there"}]
    assert "Authorization" not in headers
    other, transport, ctx = make(vllm_chat_stream(), stack="other")
    other.execute(REQUEST, ctx)
    assert "ignore_eos" not in json.loads(transport.sent[0][1])


def test_token_count_falls_back_to_events_without_usage() -> None:
    lines = [line for line in vllm_chat_stream() if b'"usage"' not in line[1]]
    client, _, ctx = make(lines)
    record = client.execute(REQUEST, ctx)
    assert (record.output_tokens, record.token_count_source) == (4, "events")


@pytest.mark.parametrize(
    ("lines", "extra", "outcome"),
    [
        ([(50 * MS, chat_chunk("Hi"))], {}, Outcome.TRUNCATED_STREAM),
        ([(50 * MS, b"data: {not json\n")], {}, Outcome.MALFORMED_EVENT),
        (
            [
                (50 * MS, b'data: {"error":{"message":"boom","code":500}}\n'),
                (51 * MS, b"data: [DONE]\n"),
            ],
            {},
            Outcome.SERVER_ERROR_EVENT,
        ),
        ([], {"status": 429, "body": b'{"error":{"message":"slow down"}}'}, Outcome.HTTP_ERROR),
        ([], {"fail_with": TransportError("timeout", "read timed out")}, Outcome.TIMEOUT_TTFT),
        (
            [(50 * MS, chat_chunk("Hi"))],
            {"fail_with": TransportError("timeout", "t")},
            Outcome.TIMEOUT_TOTAL,
        ),
    ],
)
def test_failures_are_outcomes(
    lines: list[tuple[int, bytes]], extra: dict[str, object], outcome: Outcome
) -> None:
    client, _, ctx = make(lines, **extra)
    record = client.execute(REQUEST, ctx)
    assert record.outcome is outcome
    assert record.e2e_ms is None


def test_connect_error_is_an_outcome() -> None:
    client, transport, ctx = make([])
    transport.error = TransportError("connect", "refused")
    record = client.execute(REQUEST, ctx)
    assert record.outcome is Outcome.CONNECT_ERROR
    assert record.error == "refused" and record.first_byte_ns is None


def test_api_key_comes_from_environment_and_is_sent_as_bearer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("QB_TEST_KEY", "sekrit")
    clock = ScriptedClock()
    transport = ScriptedTransport(clock, ScriptedResponse(clock, vllm_chat_stream()))
    client = OpenAIClient(
        transport,
        EndpointSpec(model="m", api_key_env="QB_TEST_KEY"),
        WorkloadConfig(),
        clock_ns=clock,
    )
    record = client.execute(REQUEST, RequestContext("t", 0, "concurrency", 1, 0))
    assert transport.sent[0][2]["Authorization"] == "Bearer sekrit"
    assert "sekrit" not in record.model_dump_json()


def test_ten_tokens_in_four_events_are_exact_to_the_microsecond() -> None:
    """vLLM's per-chunk usage says how many tokens each event carried (here 1, 3, 4, 2)."""

    def chunk(text: str, cumulative: int) -> bytes:
        body = {
            "id": "cmpl-1",
            "object": "text_completion",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": None}],
            "usage": {
                "prompt_tokens": 5,
                "total_tokens": 5 + cumulative,
                "completion_tokens": cumulative,
            },
        }
        return b"data: " + json.dumps(body).encode() + b"\n"

    us = 1_000
    lines = [
        (50_123 * us, chunk("a", 1)),
        (62_456 * us + 7, chunk(" b c d", 4)),
        (81_000 * us + 1, chunk(" e f g h", 8)),
        (90_500 * us + 3, chunk(" i j", 10)),
        (91_000 * us, b"data: [DONE]\n"),
    ]
    client, _, ctx = make(lines)
    record = client.execute(REQUEST, ctx)
    assert record.outcome is Outcome.OK and record.output_tokens == 10 and record.events == 4
    sent_ns = 10 * MS
    assert abs(record.ttft_ms - (50_123 * us - sent_ns) / 1e6) < 1e-3  # type: ignore[operator]
    tpot = ((90_500 * us + 3) - 50_123 * us) / 9 / 1e6
    assert abs(record.tpot_ms - tpot) < 1e-3  # type: ignore[operator]
    gaps_ns = [
        (62_456 * us + 7 - 50_123 * us) / 3,
        (81_000 * us + 1 - (62_456 * us + 7)) / 4,
        (90_500 * us + 3 - (81_000 * us + 1)) / 2,
    ]
    assert all(
        abs(got - want / 1e6) < 1e-3 for got, want in zip(record.itl_ms, gaps_ns, strict=True)
    )


def test_keepalives_do_not_extend_the_total_deadline() -> None:
    from loadtest.config import TimeoutConfig

    lines = [(50 * MS, chat_chunk("Hi"))] + [
        (i * 1000 * MS, b": keep-alive\n") for i in range(1, 5)
    ]
    clock = ScriptedClock(now_ns=10 * MS)
    transport = ScriptedTransport(clock, ScriptedResponse(clock, lines), headers_at_ns=15 * MS)
    client = OpenAIClient(
        transport,
        EndpointSpec(model="m"),
        WorkloadConfig(),
        TimeoutConfig(ttft=1, total=2.5),
        clock_ns=clock,
    )
    record = client.execute(REQUEST, RequestContext("t", 0, "concurrency", 1, 0))
    assert record.outcome is Outcome.TIMEOUT_TOTAL and record.first_token_ns == 50 * MS


def test_ttft_deadline_applies_before_the_first_token() -> None:
    from loadtest.config import TimeoutConfig

    lines = [(800 * MS, b": keep-alive\n"), (1600 * MS, chat_chunk("late"))]
    clock = ScriptedClock(now_ns=0)
    transport = ScriptedTransport(clock, ScriptedResponse(clock, lines))
    client = OpenAIClient(
        transport,
        EndpointSpec(model="m"),
        WorkloadConfig(),
        TimeoutConfig(ttft=1, total=10),
        clock_ns=clock,
    )
    record = client.execute(REQUEST, RequestContext("t", 0, "concurrency", 1, 0))
    assert record.outcome is Outcome.TIMEOUT_TTFT and record.first_token_ns is None


def _cut_short(finish: str) -> list[tuple[int, bytes]]:
    """vLLM 0.33's engine abort: a normal empty chunk with the finish reason, usage, [DONE]."""
    return [
        (20 * MS, chat_chunk(None, role=True)),
        (50 * MS, chat_chunk("Hello")),
        (60 * MS, chat_chunk(" big")),
        (70 * MS, chat_chunk("", finish=finish)),
        (71 * MS, usage_chunk(7, 2)),
        (72 * MS, b"data: [DONE]\n"),
    ]


@pytest.mark.parametrize("finish", ["abort", "error"])
def test_a_stream_the_engine_aborted_is_not_ok(finish: str) -> None:
    client, _, ctx = make(_cut_short(finish))
    record = client.execute(REQUEST, ctx)
    assert record.outcome is Outcome.ABORTED
    assert f"finish_reason {finish!r}" in (record.error or "")
    assert record.end_ns is not None, "the stream itself ended properly"
    assert record.e2e_ms is None, "failures count in the all-requests figures only"
    assert record.ttft_ms is not None and record.output_tokens == 2


def test_fewer_tokens_than_the_pinned_length_is_not_ok() -> None:
    lines = [line for line in vllm_chat_stream() if b" world" not in line[1]]  # 3 of 4 tokens
    lines = [(at, usage_chunk(7, 3) if b'"usage"' in line else line) for at, line in lines]
    client, _, ctx = make(lines)
    record = client.execute(REQUEST, ctx)
    assert record.outcome is Outcome.ABORTED
    assert record.error == "the server generated 3 of the 4 pinned output tokens"


def test_an_unpinned_stack_may_stop_early() -> None:
    """TGI cannot pin the output length: a shorter answer is its normal end (stop)."""
    lines = [line for line in vllm_chat_stream() if b" world" not in line[1]]
    client, _, ctx = make(lines, stack="tgi")
    record = client.execute(REQUEST, ctx)
    assert record.outcome is Outcome.OK
