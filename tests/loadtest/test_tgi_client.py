import json

import pytest

from loadtest.clients.base import RequestContext
from loadtest.clients.tgi import TgiClient
from loadtest.config import EndpointSpec, WorkloadConfig
from loadtest.records import Outcome
from loadtest.workload import GenRequest
from tests.loadtest.fakes import ScriptedClock, ScriptedResponse, ScriptedTransport

MS = 1_000_000


def token_event(index: int, text: str, final: bool = False) -> bytes:
    body = {
        "index": index,
        "token": {"id": index, "text": text, "logprob": -0.1, "special": False},
        "generated_text": "x" * index if final else None,
        "details": {
            "finish_reason": "length",
            "generated_tokens": index,
            "seed": None,
            "input_length": 9,
        }
        if final
        else None,
    }
    return b"data:" + json.dumps(body, separators=(",", ":")).encode() + b"\n"  # no space


def run(lines: list[tuple[int, bytes]]):  # type: ignore[no-untyped-def]
    clock = ScriptedClock(now_ns=0)
    transport = ScriptedTransport(clock, ScriptedResponse(clock, lines), headers_at_ns=2 * MS)
    client = TgiClient(
        transport, EndpointSpec(model="tgi", stack="tgi"), WorkloadConfig(), clock_ns=clock
    )
    record = client.execute(GenRequest("hi", 1, 3), RequestContext("t", 0, "rate", 2.0, 0))
    return record, transport


def test_native_stream_without_done_marker_ends_at_the_final_event() -> None:
    record, transport = run(
        [
            (10 * MS, b":\n"),  # keep-alive comment
            (20 * MS, token_event(1, "Hel")),
            (20 * MS, b"\n"),
            (30 * MS, token_event(2, "lo")),
            (45 * MS, token_event(3, "!", final=True)),
        ]
    )
    assert record.outcome is Outcome.OK
    assert (record.output_tokens, record.token_count_source, record.prompt_tokens) == (
        3,
        "usage",
        9,
    )
    assert record.ttft_ms == pytest.approx(20.0) and record.e2e_ms == pytest.approx(45.0)
    assert record.itl_ms == pytest.approx([10.0, 15.0])
    path, body, _ = transport.sent[0]
    assert path == "/generate_stream"
    assert json.loads(body) == {
        "inputs": "hi",
        "parameters": {"max_new_tokens": 3, "details": True},
    }


def test_overload_error_inside_a_200_stream() -> None:
    record, _ = run([(5 * MS, b'data:{"error":"Model is overloaded","error_type":"overloaded"}\n')])
    assert record.outcome is Outcome.SERVER_ERROR_EVENT and record.http_status == 200
    assert record.error == "overloaded: Model is overloaded"


def test_stream_closed_before_the_final_event_is_truncated() -> None:
    record, _ = run([(20 * MS, token_event(1, "a")), (30 * MS, token_event(2, "b"))])
    assert record.outcome is Outcome.TRUNCATED_STREAM and record.output_tokens == 2
