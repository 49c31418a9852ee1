"""Checks of the Locust transport against a real simulator, run in a child process.

Importing Locust monkey-patches the whole interpreter with gevent, so these run in their
own process (`python -m tests.loadtest.locust_transport_checks URL CHECK`), driven by
test_locust_transport.py. The simulator must use fixed timing: TTFT 200 ms, 20 ms per token.
"""

from __future__ import annotations

import json
import sys

import gevent
from locust.contrib.fasthttp import FastHttpSession
from locust.event import EventHook

from loadtest.locust_transport import LocustTransport
from loadtest.transport import TransportError

HEADERS = {"Content-Type": "application/json"}


def body(tokens: int) -> bytes:
    request = {"prompt": "hi", "max_tokens": tokens, "stream": True, "ignore_eos": True}
    return json.dumps(request).encode()


def yields_after_a_network_read_and_not_after_a_buffered_line(
    transport: LocustTransport,
) -> None:
    ran: list[str] = []
    response = transport.post("/v1/completions", body(2), HEADERS, timeout_s=5)
    gevent.spawn(ran.append, "after headers")
    response.yield_to_others()
    assert ran == ["after headers"]

    assert response.readline(timeout_s=5).startswith(b"data: {")  # waited 200 ms for it
    gevent.spawn(ran.append, "after a token")
    response.yield_to_others()
    assert ran[-1] == "after a token"

    assert response.readline(timeout_s=5) == b"\n"  # came in the same write as the token
    gevent.spawn(ran.append, "too early")
    response.yield_to_others()
    assert "too early" not in ran
    response.close()
    gevent.sleep(0)


def a_read_past_its_deadline_is_a_timeout(transport: LocustTransport) -> None:
    response = transport.post("/v1/completions", body(2), HEADERS, timeout_s=5)
    try:
        response.readline(timeout_s=0.01)  # the first token is 200 ms away
    except TransportError as exc:
        assert exc.kind == "timeout", exc.kind
    else:
        raise AssertionError("no timeout")
    response.close()


def a_half_read_stream_is_not_reused(transport: LocustTransport) -> None:
    first = transport.post("/v1/completions", body(50), HEADERS, timeout_s=5)
    assert first.readline(timeout_s=5).startswith(b"data: {")
    first.close()  # 49 tokens still to come on that connection

    second = transport.post("/v1/completions", body(1), HEADERS, timeout_s=5)
    assert second.status == 200
    lines = []
    while line := second.readline(timeout_s=5):
        lines.append(line)
    events = [line for line in lines if line.startswith(b"data: ")]
    assert events[-1] == b"data: [DONE]\n"
    assert sum(b'"text"' in event for event in events) == 1  # nothing left over from the first
    second.close()


CHECKS = {
    "yield": yields_after_a_network_read_and_not_after_a_buffered_line,
    "deadline": a_read_past_its_deadline_is_a_timeout,
    "reuse": a_half_read_stream_is_not_reused,
}

if __name__ == "__main__":
    url, name = sys.argv[1:]
    CHECKS[name](LocustTransport(FastHttpSession(url, request_event=EventHook(), user=None), url))
    print("passed", name)
