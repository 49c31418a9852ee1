"""`Transport` over Locust's FastHttpSession, reading event streams as bytes arrive.

Requests go through the session's connection pool for the target (its timeouts, TLS
settings and keep-alive connections), not through its user agent: no cookie jar, redirect
loop or response wrapper per request, none of which an LLM API uses, and Locust's own
request row (timed at headers) never fires. The body is read from the pooled socket itself
(not with `iter_lines`/`iter_content`, which wait for 1 KiB and would add ~60 ms to every
TTFT: TRAPS.md 1): each read hands the client every byte that has arrived, which
geventhttpclient's HTTP parser has already freed of its chunked framing.

Stamps: on Linux (x86-64, arm64) the socket carries `SO_TIMESTAMPNS`, and every read of the
answer, its first one (the headers, with whatever came with them) included, is a `recvmsg`
that also returns when the kernel received the last byte read (`socket(7)`): a generator busy
with other streams still stamps a token when it arrived, not when it got round to it. This
holds while it reads each stream before the next write of it arrives: bytes that wait
together are merged by TCP into one buffer stamped with the newest (`tcp_try_coalesce`), so
a generator behind a stream by more than one inter-token gap gives the earlier tokens the
later time (`read_lag_ms` in the records says how far behind it was).
Elsewhere, and over TLS or a proxy, the client stamps at the read, and after a read that had
to wait for the network `yield_to_others` lets the other greenlets woken by the same poll
take their stamps before this one parses.

Reads wait for the socket to become readable first, through gevent's own watcher of it (a
read that fails costs an exception); deadlines are one gevent timer per request phase
(first token, then the whole request), armed when the client's deadline changes, not one
per read.
"""

from __future__ import annotations

import platform
import socket
import struct
import sys
import time
from collections.abc import Mapping
from typing import Any

import gevent
from gevent.ssl import SSLSocket
from geventhttpclient.response import HTTPConnectionClosed, HTTPSocketPoolResponse
from geventhttpclient.url import URL
from locust.contrib.fasthttp import FastHttpSession

from loadtest.transport import StreamingResponse, TransportError

__all__ = ["KERNEL_STAMPS", "LocustTransport", "keep_stamping_on"]

# `SO_TIMESTAMPNS` (= `SCM_TIMESTAMPNS`) is 35 in include/uapi/asm-generic/socket.h, which
# x86-64 and arm64 use; Python's socket module does not export it.
_SO_TIMESTAMPNS = 35
KERNEL_STAMPS = sys.platform == "linux" and platform.machine() in ("x86_64", "aarch64")
_TIMESPEC = struct.Struct("@qq")  # struct timespec on a 64-bit kernel
_ANCILLARY = socket.CMSG_SPACE(_TIMESPEC.size)
_BLOCK = 16 * 1024
_REARM_S = 0.001  # a deadline that moved less than this keeps its timer


class _Deadline(Exception):
    """Raised by the request's gevent timer inside a wait that passed the deadline."""


_kept: list[socket.socket] = []


def keep_stamping_on() -> None:
    """Linux turns receive stamping on for the whole host only once some socket asks, and
    only a moment later (a deferred static key): one idle socket asking for as long as this
    process runs keeps it on, so the first answers are stamped too."""
    if KERNEL_STAMPS and not _kept:
        keeper = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            keeper.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        except OSError:
            keeper.close()
            return
        _kept.append(keeper)


def _stamping(sock: Any) -> bool:
    """Ask the kernel to stamp what this (plain TCP) socket receives; False if it cannot."""
    if not KERNEL_STAMPS or isinstance(sock, SSLSocket):
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
    except OSError:
        return False
    return True


def _recv_stamped(sock: Any) -> tuple[bytes, int | None]:
    """What has arrived on a plain socket (waiting until something has), and the kernel's
    receive time of its last byte in `time.time_ns()` terms (None: no stamp)."""
    while True:
        sock.hub.wait(sock._read_event)  # gevent's own watcher of this socket
        try:
            data, ancillary, _, _ = sock._sock.recvmsg(_BLOCK, _ANCILLARY)
        except BlockingIOError:
            continue  # woken for nothing: wait again
        for level, kind, stamp in ancillary:
            if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS:
                seconds, nanoseconds = _TIMESPEC.unpack(stamp)
                return data, seconds * 1_000_000_000 + nanoseconds
        return data, None


def _age(arrived_ns: int | None) -> int | None:
    return None if arrived_ns is None else max(time.time_ns() - arrived_ns, 0)


class _Stream:
    def __init__(self, raw: Any, arrived_ns: int | None) -> None:
        self._raw = raw  # geventhttpclient's HTTPSocketPoolResponse
        self.status = int(raw.status_code)
        content_type = raw.get("content-type")
        self.content_type = content_type if isinstance(content_type, str) else None
        self._arrived_ns = arrived_ns  # the kernel's stamp of what the headers' read took
        self.headers_age_ns = _age(arrived_ns)
        self._waited = arrived_ns is None  # for the headers: let the others stamp theirs first
        self._timer: gevent.Timeout | None = None
        self._deadline = 0.0
        self._sock: Any = None  # the socket while this stream reads its body
        self._reading = False
        self._user_stamps = False

    def read_chunk(self, timeout_s: float | None = None) -> tuple[bytes, int | None]:
        raw = self._raw
        body = raw._body_buffer
        if body:  # arrived with the headers (or before the client asked)
            data = bytes(body)
            del body[:]
            return data, _age(self._arrived_ns)
        sock = self._sock
        if sock is None:
            sock = None if self._reading else self._take_socket()
            if sock is None:
                return b"", None
        self._arm(timeout_s)
        arrived_ns = None
        try:
            while True:
                if self._user_stamps:  # TLS (decrypted above the socket), or no kernel stamps
                    data = sock.recv(_BLOCK)
                else:
                    data, arrived_ns = _recv_stamped(sock)
                raw.feed(data)  # b"": the peer closed; the parser decides if that ends it
                if raw._sock is None:  # the message is complete: back in the pool
                    self._sock = None
                if body or not data or self._sock is None:
                    break
        except _Deadline as exc:
            raise TransportError("timeout", "no data before the deadline") from exc
        except Exception as exc:  # OSError, and geventhttpclient's HTTPParseError & co.
            self._sock = None
            raise TransportError("connect", f"connection lost: {exc!r}") from exc
        self._waited = arrived_ns is None  # kernel-stamped bytes need nobody to go first
        self._arrived_ns = arrived_ns
        data = bytes(body)
        del body[:]
        return data, _age(arrived_ns)

    def _take_socket(self) -> Any:
        """The first body read: the socket this stream reads until the body ends."""
        self._reading = True
        sock = self._raw._sock
        if sock is None or self._raw.message_complete:
            return None
        self._sock = sock
        self._user_stamps = not KERNEL_STAMPS or isinstance(sock, SSLSocket)
        return sock

    def _arm(self, timeout_s: float | None) -> None:
        if timeout_s is None:
            self._disarm()
            return
        deadline = time.perf_counter() + timeout_s
        if self._timer is not None and abs(deadline - self._deadline) < _REARM_S:
            return
        self._disarm()
        self._timer = gevent.Timeout.start_new(timeout_s, _Deadline)
        self._deadline = deadline

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.close()
            self._timer = None

    def yield_to_others(self) -> None:
        if self._waited:
            self._waited = False
            try:
                gevent.sleep(0)  # runs again once the greenlets already woken have had their turn
            except _Deadline as exc:
                raise TransportError("timeout", "no data before the deadline") from exc

    def read(self) -> bytes:
        try:  # geventhttpclient reads the rest with the socket's own timeout
            return bytes(self._raw.read())
        except Exception:  # OSError, and geventhttpclient's HTTPParseError & co.
            return b""

    def close(self) -> None:
        self._disarm()
        self._sock = None
        raw = self._raw
        if raw is not None and not raw.message_complete and raw._sock is not None:
            # A half-read stream must not go back to the pool: close its connection.
            raw._pool.release_socket(raw._sock)
            raw._sock = None


class LocustTransport:
    def __init__(self, session: FastHttpSession, base_url: str) -> None:
        self._url = base_url.rstrip("/")
        url = URL(self._url)
        agent = session.client
        self._client = agent.clientpool.get_client(url)
        self._prefix = url.path.rstrip("/")
        self._headers = dict(agent.default_headers.items())
        # Its own first read of each answer (kernel-stamped) needs a plain connection to the
        # target; over TLS or a proxy geventhttpclient sends and reads the headers itself.
        client = self._client
        keep_stamping_on()
        self._own_read = (
            KERNEL_STAMPS
            and not client.ssl
            and not client.use_proxy
            and hasattr(client, "_connection_pool")
            and hasattr(client, "_build_request")
        )

    def post(
        self, path: str, body: bytes, headers: Mapping[str, str], timeout_s: float | None = None
    ) -> StreamingResponse:
        url = self._url + path
        merged = {**self._headers, **headers}
        try:
            with gevent.Timeout(timeout_s, _Deadline):
                if self._own_read:
                    raw, arrived_ns = self._request(self._prefix + path, body, merged)
                else:
                    raw = self._client.request("POST", self._prefix + path, body, merged)
                    arrived_ns = None
        except (_Deadline, TimeoutError) as exc:
            raise TransportError("timeout", f"no response from {url} before the deadline") from exc
        except Exception as exc:  # OSError, and geventhttpclient's HTTPParseError & co.
            raise TransportError("connect", f"{url}: {exc}") from exc
        return _Stream(raw, arrived_ns)

    def _request(self, uri: str, body: bytes, headers: dict[str, str]) -> tuple[Any, int | None]:
        """`HTTPClient.request` for a POST over a plain pooled connection, except that the
        answer's first read is ours, with the kernel's stamp (as there, a POST that failed
        on a pooled connection is not sent again: it may have been processed)."""
        client = self._client
        pool = client._connection_pool
        head = client._build_request("POST", uri, body=body, headers=headers)
        sock = pool.get_socket()
        try:
            _stamping(sock)
            sock.sendall(head.encode("latin-1") + body)
            data, arrived_ns = _recv_stamped(sock)
            if not data:
                raise HTTPConnectionClosed("connection closed.")
        except BaseException:
            pool.release_socket(sock)
            raise
        raw = HTTPSocketPoolResponse(
            sock,
            pool,
            block_size=client.block_size,
            method="POST",
            headers_type=client.headers_type,
            pre_buffered=data,
        )
        return raw, arrived_ns
