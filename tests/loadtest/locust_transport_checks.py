"""Checks of the Locust transport against a real simulator, run in a child process.

Importing Locust monkey-patches the whole interpreter with gevent, so these run in their
own process (`python -m tests.loadtest.locust_transport_checks URL CHECK`), driven by
test_locust_transport.py. The simulator must use fixed timing: TTFT 200 ms, 20 ms per token.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import time

import gevent
import gevent.event
import gevent.monkey
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


def a_token_that_came_with_the_headers_has_their_kernel_stamp(
    transport: LocustTransport,
) -> None:
    """Headers and the first event in one write; the process is then busy for 150 ms before
    the client reads them: both say they arrived at least 150 ms before."""
    blocking_sleep = gevent.monkey.get_original("time", "sleep")

    def answer_at_once(conn: socket.socket, _: object) -> None:
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\na\r\ndata: {}\n\n\r\n")  # fmt: skip
        blocking_sleep(0.15)  # the whole process, as CPU-bound work of other streams would
        gevent.sleep(5)

    server = StreamServer(("127.0.0.1", 0), answer_at_once)
    server.start()
    url = f"http://127.0.0.1:{server.server_port}"
    own = LocustTransport(FastHttpSession(url, request_event=EventHook(), user=None), url)
    response = own.post("/", b"{}", HEADERS, timeout_s=5)
    assert response.headers_age_ns is not None and response.headers_age_ns >= 150_000_000
    data, age_ns = response.read_chunk(timeout_s=5)
    assert data == b"data: {}\n\n", data
    assert age_ns is not None and age_ns >= 150_000_000, age_ns
    response.close()
    server.stop()


def a_stream_over_tls_is_read_through_the_ssl_layer(transport: LocustTransport) -> None:
    """Over HTTPS the body is the decrypted bytes (the socket under TLS holds ciphertext)."""
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = f"{tmp}/cert.pem", f"{tmp}/key.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", cert],
            check=True, capture_output=True,
        )  # fmt: skip

        def two_events(conn: socket.socket, _: object) -> None:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n")  # fmt: skip
            for _ in range(2):
                gevent.sleep(0.05)
                conn.sendall(b"a\r\ndata: {}\n\n\r\n")
            conn.sendall(b"0\r\n\r\n")

        server = StreamServer(("127.0.0.1", 0), two_events, certfile=cert, keyfile=key)
        server.start()
        url = f"https://127.0.0.1:{server.server_port}"
        own = LocustTransport(FastHttpSession(url, request_event=EventHook(), user=None), url)
        response = own.post("/", b"{}", HEADERS, timeout_s=5)
        assert response.status == 200 and response.headers_age_ns is None
        data, age_ns = response.read_chunk(timeout_s=5)
        assert data == b"data: {}\n\n" and age_ns is None, data  # stamped at the read
        assert read_all(response) == b"data: {}\n\n"
        response.close()
        server.stop()


def kernel_stamped_reads_need_nobody_to_go_first(transport: LocustTransport) -> None:
    """Headers and tokens carry the kernel's stamp: no yield after either."""
    ran: list[str] = []
    response = transport.post("/v1/completions", body(2), HEADERS, timeout_s=5)
    assert response.headers_age_ns is not None
    gevent.spawn(ran.append, "after headers")
    response.yield_to_others()
    assert ran == []  # no yield after kernel-stamped headers
    data, age_ns = response.read_chunk(timeout_s=5)  # waits 200 ms: the other one runs
    assert data.startswith(b"data: {") and age_ns is not None
    gevent.spawn(ran.append, "after a token")
    response.yield_to_others()
    assert ran == ["after headers"]  # none after a kernel-stamped token either
    response.close()
    gevent.sleep(0)


def without_kernel_stamps_it_yields_after_each_wait(url: str) -> None:
    """The client stamps at the read: after the headers and after a read that waited, the
    greenlets woken with this one stamp first."""
    locust_transport.KERNEL_STAMPS = False
    transport = LocustTransport(FastHttpSession(url, request_event=EventHook(), user=None), url)
    ran: list[str] = []
    response = transport.post("/v1/completions", body(2), HEADERS, timeout_s=5)
    assert response.headers_age_ns is None
    gevent.spawn(ran.append, "after headers")
    response.yield_to_others()
    assert ran == ["after headers"]
    data, age_ns = response.read_chunk(timeout_s=5)  # waited 200 ms for it
    assert data.startswith(b"data: {") and age_ns is None
    gevent.spawn(ran.append, "after a token")
    response.yield_to_others()
    assert ran[-1] == "after a token"
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
    """The body is read without the socket's own per-wait timeout (one timer per request
    instead): the pooled socket keeps its timeout, is reused, and no timer is left armed."""
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
    "stamp-headers": a_token_that_came_with_the_headers_has_their_kernel_stamp,
    "tls": a_stream_over_tls_is_read_through_the_ssl_layer,
    "yield": kernel_stamped_reads_need_nobody_to_go_first,
    "deadline": a_read_past_its_deadline_is_a_timeout,
    "pool": a_finished_stream_gives_the_pool_its_socket_as_it_was,
    "reuse": a_half_read_stream_is_not_reused,
}

if __name__ == "__main__":
    url, name = sys.argv[1:]
    locust_transport.keep_stamping_on()  # as a generator does when its first user starts
    time.sleep(0.05)  # Linux turns host-wide stamping on a moment later
    if name == "yield-user":
        without_kernel_stamps_it_yields_after_each_wait(url)
        print("passed", name)
        sys.exit(0)
    session = FastHttpSession(
        url, request_event=EventHook(), user=None, network_timeout=NETWORK_TIMEOUT_S
    )
    CHECKS[name](LocustTransport(session, url))
    print("passed", name)
