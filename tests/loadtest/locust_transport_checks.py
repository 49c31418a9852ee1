"""Checks of the Locust transport against a real simulator, run in a child process.

Importing Locust monkey-patches the whole interpreter with gevent, so these run in their
own process (`python -m tests.loadtest.locust_transport_checks URL CHECK`), driven by
test_locust_transport.py. The simulator must use fixed timing: TTFT 200 ms, 20 ms per token.
"""

from __future__ import annotations

import json
import socket
import sys
import time

import gevent
import gevent.event
from gevent.server import StreamServer
from gevent.socket import wait_read
from locust.contrib.fasthttp import FastHttpSession
from locust.event import EventHook

from loadtest import locust_transport
from loadtest.locust_transport import LocustTransport
from loadtest.transport import TransportError

HEADERS = {"Content-Type": "application/json"}
NETWORK_TIMEOUT_S = 33.0


def body(tokens: int) -> bytes:
    request = {"prompt": "hi", "max_tokens": tokens, "stream": True, "ignore_eos": True}
    return json.dumps(request).encode()


def read_all(response: object) -> bytes:
    data = b""
    while chunk := response.read_chunk(timeout_s=5)[0]:  # type: ignore[attr-defined]
        data += chunk
    return data


def the_kernel_stamps_bytes_when_they_arrive_not_when_they_are_read(
    transport: LocustTransport,
) -> None:
    """A server of this process writes one event and then nothing; the event is on the
    socket (readable) at t, and read 150 ms later: the read must say that its bytes arrived
    at least 150 ms before it returned."""
    assert locust_transport.KERNEL_STAMPS, "this check runs on Linux x86-64 or arm64"
    go = gevent.event.Event()

    def one_event(conn: socket.socket, _: object) -> None:
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")  # fmt: skip
        go.wait(5)
        conn.sendall(b"a\r\ndata: {}\n\n\r\n")
        gevent.sleep(5)  # then nothing more

    server = StreamServer(("127.0.0.1", 0), one_event)
    server.start()
    url = f"http://127.0.0.1:{server.server_port}"
    own = LocustTransport(FastHttpSession(url, request_event=EventHook(), user=None), url)
    response = own.post("/", b"{}", HEADERS, timeout_s=5)
    sock = response._raw._sock  # type: ignore[attr-defined]
    go.set()
    wait_read(sock.fileno(), timeout=5)  # the event has arrived: no read yet
    time.sleep(0.15)  # a busy generator (blocks the whole process, as CPU-bound work would)
    data, age_ns = response.read_chunk(timeout_s=5)
    assert data == b"data: {}\n\n", data
    assert age_ns is not None and age_ns >= 150_000_000, age_ns
    response.close()
    server.stop()


def yields_after_a_network_read_only_without_kernel_stamps(transport: LocustTransport) -> None:
    ran: list[str] = []
    response = transport.post("/v1/completions", body(2), HEADERS, timeout_s=5)
    gevent.spawn(ran.append, "after headers")
    response.yield_to_others()
    assert ran == ["after headers"]

    assert response.read_chunk(timeout_s=5)[0].startswith(b"data: {")  # waited 200 ms
    gevent.spawn(ran.append, "after a token")
    response.yield_to_others()
    if locust_transport.KERNEL_STAMPS:  # the kernel stamped it: nobody needs to go first
        assert ran == ["after headers"]
    else:
        assert ran[-1] == "after a token"
    response.close()
    gevent.sleep(0)


def without_kernel_stamps_it_yields(transport: LocustTransport) -> None:
    locust_transport.KERNEL_STAMPS = False
    yields_after_a_network_read_only_without_kernel_stamps(transport)
    response = transport.post("/v1/completions", body(1), HEADERS, timeout_s=5)
    assert response.read_chunk(timeout_s=5)[1] is None  # the client stamps at the read
    response.close()


def a_read_past_its_deadline_is_a_timeout(transport: LocustTransport) -> None:
    response = transport.post("/v1/completions", body(2), HEADERS, timeout_s=5)
    try:
        response.read_chunk(timeout_s=0.01)  # the first token is 200 ms away
    except TransportError as exc:
        assert exc.kind == "timeout", exc.kind
    else:
        raise AssertionError("no timeout")
    response.close()


def a_finished_stream_gives_the_pool_its_socket_as_it_was(transport: LocustTransport) -> None:
    """The body is read with the socket's own timeout lifted (one timer per request instead);
    the pooled socket gets it back, and the deadline timer is gone."""
    response = transport.post("/v1/completions", body(3), HEADERS, timeout_s=5)
    sock = response._raw._sock  # type: ignore[attr-defined]
    assert sock.gettimeout() == NETWORK_TIMEOUT_S
    events = [line for line in read_all(response).split(b"\n") if line.startswith(b"data: ")]
    assert len(events) == 4 and events[-1] == b"data: [DONE]"
    assert sock.gettimeout() == NETWORK_TIMEOUT_S
    response.close()
    gevent.sleep(0.05)  # a timer left armed would fire into this greenlet now
    again = transport.post("/v1/completions", body(1), HEADERS, timeout_s=5)
    assert again._raw._sock is sock  # type: ignore[attr-defined]  # reused, not closed
    assert read_all(again).endswith(b"data: [DONE]\n\n")
    again.close()


def a_half_read_stream_is_not_reused(transport: LocustTransport) -> None:
    first = transport.post("/v1/completions", body(50), HEADERS, timeout_s=5)
    assert first.read_chunk(timeout_s=5)[0].startswith(b"data: {")
    first.close()  # 49 tokens still to come on that connection

    second = transport.post("/v1/completions", body(1), HEADERS, timeout_s=5)
    assert second.status == 200
    assert second.content_type == "text/event-stream; charset=utf-8"
    events = [line for line in read_all(second).split(b"\n") if line.startswith(b"data: ")]
    assert events[-1] == b"data: [DONE]"
    assert sum(b'"text"' in event for event in events) == 1  # nothing left over from the first
    second.close()


CHECKS = {
    "stamp": the_kernel_stamps_bytes_when_they_arrive_not_when_they_are_read,
    "yield": yields_after_a_network_read_only_without_kernel_stamps,
    "yield-user": without_kernel_stamps_it_yields,
    "deadline": a_read_past_its_deadline_is_a_timeout,
    "pool": a_finished_stream_gives_the_pool_its_socket_as_it_was,
    "reuse": a_half_read_stream_is_not_reused,
}

if __name__ == "__main__":
    url, name = sys.argv[1:]
    session = FastHttpSession(
        url, request_event=EventHook(), user=None, network_timeout=NETWORK_TIMEOUT_S
    )
    CHECKS[name](LocustTransport(session, url))
    print("passed", name)
