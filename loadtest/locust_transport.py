"""`Transport` over Locust's FastHttpSession, reading event streams as bytes arrive.

Requests go through the session's user agent directly, so Locust's own request row (timed
at headers) never fires. The body is read from the pooled socket itself (not with
`iter_lines`/`iter_content`, which wait for 1 KiB and would add ~60 ms to every TTFT:
TRAPS.md 1): each read hands the client every byte that has arrived, which geventhttpclient's
HTTP parser has already freed of its chunked framing.

Stamps: on Linux the socket carries `SO_TIMESTAMPNS`, so each read also returns when the
kernel received its last byte, and a generator busy with other streams still stamps a token
when it arrived rather than when it got round to reading it (loopback and real NICs alike;
`socket(7)`). Elsewhere the client stamps at the read, and after a read that had to wait
for the network `yield_to_others` lets the other greenlets woken by the same poll take their
stamps before this one parses.

Reads: the body is read from the socket gevent wraps, waiting for it to become readable
first (a read that would fail costs an exception) through gevent's own watcher of the
socket, so no gevent timer is made per read; deadlines are one gevent timer per request phase
(first token, then the whole request), armed when the client's deadline changes.
"""

from __future__ import annotations

import contextlib
import platform
import socket
import struct
import sys
import time
from collections.abc import Mapping
from typing import Any

import gevent
from geventhttpclient.url import URL
from locust.contrib.fasthttp import FastHttpSession

from loadtest.transport import StreamingResponse, TransportError

__all__ = ["KERNEL_STAMPS", "LocustTransport"]

# `SO_TIMESTAMPNS` (= `SCM_TIMESTAMPNS`) is 35 in include/uapi/asm-generic/socket.h, which
# x86-64 and arm64 use; Python's socket module does not export it.
_SO_TIMESTAMPNS = 35
KERNEL_STAMPS = sys.platform == "linux" and platform.machine() in ("x86_64", "aarch64")
_TIMESPEC = struct.Struct("@qq")  # struct timespec on a 64-bit kernel
_ANCILLARY = socket.CMSG_SPACE(_TIMESPEC.size) if KERNEL_STAMPS else 0
_BLOCK = 16 * 1024
_REARM_S = 0.001  # a deadline that moved less than this keeps its timer


class _Deadline(Exception):
    """Raised by the request's gevent timer inside a wait that passed the deadline."""


class _Stream:
    def __init__(self, raw: Any) -> None:
        self._raw = raw  # geventhttpclient's HTTPSocketPoolResponse
        self.status = int(raw.status_code)
        content_type = raw.get("content-type")
        self.content_type = content_type if isinstance(content_type, str) else None
        self._waited = True  # for the headers (stamped here, not by the kernel)
        self._timer: gevent.Timeout | None = None
        self._deadline = 0.0
        self._sock: Any = None  # the socket while this stream reads its body
        self._reading = False
        self._drained = True  # nothing of the body read yet: wait for it before reading
        self._kernel = False
        sock = self._raw._sock
        if KERNEL_STAMPS and sock is not None:
            # Before the first token can arrive (bytes received earlier carry no stamp); a
            # pooled connection keeps it for the requests it carries next.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
                self._kernel = True

    def _take_socket(self) -> Any:
        """The first body read: the socket this stream reads until the body ends."""
        self._reading = True
        sock = self._raw._sock
        if sock is None or self._raw.message_complete:
            return None
        self._sock = sock
        return sock

    def read_chunk(self, timeout_s: float | None = None) -> tuple[bytes, int | None]:
        raw = self._raw
        body = raw._body_buffer
        if body:  # arrived with the headers, or earlier than the client asked: no stamp
            data = bytes(body)
            del body[:]
            return data, None
        sock = self._sock
        if sock is None:
            sock = None if self._reading else self._take_socket()
            if sock is None:
                return b"", None
        self._arm(timeout_s)
        try:
            while True:
                if self._drained:  # the last read emptied the socket: wait before reading
                    sock.hub.wait(sock._read_event)
                try:
                    data, ancillary, _, _ = sock._sock.recvmsg(_BLOCK, _ANCILLARY)
                except BlockingIOError:
                    self._drained = True  # woken for nothing: wait again
                    continue
                self._drained = len(data) < _BLOCK
                raw.feed(data)  # b"": the peer closed; the parser decides if that ends it
                if raw._sock is None:  # the message is complete: back in the pool
                    self._release()
                if body or not data or self._sock is None:
                    break
        except _Deadline as exc:
            raise TransportError("timeout", "no data before the deadline") from exc
        except Exception as exc:  # OSError, and geventhttpclient's HTTPParseError & co.
            self._release()
            raise TransportError("connect", f"connection lost: {exc!r}") from exc
        self._waited = not self._kernel  # kernel-stamped bytes need nobody to go first
        age = None
        for level, kind, stamp in ancillary:  # the kernel's time of the last byte read
            if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS:
                seconds, nanoseconds = _TIMESPEC.unpack(stamp)
                age = max(time.time_ns() - seconds * 1_000_000_000 - nanoseconds, 0)
        data = bytes(body)
        del body[:]
        return data, age

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

    def _release(self) -> None:
        """This stream is done with the socket (it may already be back in the pool)."""
        self._sock = None

    def yield_to_others(self) -> None:
        if self._waited:
            self._waited = False
            try:
                gevent.sleep(0)  # runs again once the greenlets already woken have had their turn
            except _Deadline as exc:
                raise TransportError("timeout", "no data before the deadline") from exc

    def read(self) -> bytes:
        self._release()  # geventhttpclient reads the rest with the socket's own timeout
        try:
            return bytes(self._raw.read())
        except Exception:  # OSError, and geventhttpclient's HTTPParseError & co.
            return b""

    def close(self) -> None:
        self._disarm()
        self._release()
        raw = self._raw
        if raw is not None and not raw.message_complete and raw._sock is not None:
            # A half-read stream must not go back to the pool: close its connection.
            raw._pool.release_socket(raw._sock)
            raw._sock = None


class LocustTransport:
    """Posts through the session's connection pool for the target's host (its timeouts, TLS
    settings and pooled keep-alive connections, with geventhttpclient's retry of a stale
    pooled connection), not through its user agent: no cookie jar, redirects or response
    wrapper per request, none of which an LLM API uses."""

    def __init__(self, session: FastHttpSession, base_url: str) -> None:
        self._url = base_url.rstrip("/")
        url = URL(self._url)
        agent = session.client
        self._client = agent.clientpool.get_client(url)
        self._prefix = url.path.rstrip("/")
        self._headers = dict(agent.default_headers.items())

    def post(
        self, path: str, body: bytes, headers: Mapping[str, str], timeout_s: float | None = None
    ) -> StreamingResponse:
        url = self._url + path
        try:
            with gevent.Timeout(timeout_s, _Deadline):
                raw = self._client.request(
                    "POST", self._prefix + path, body=body, headers={**self._headers, **headers}
                )
        except (_Deadline, TimeoutError) as exc:
            raise TransportError("timeout", f"no response from {url} before the deadline") from exc
        except Exception as exc:  # OSError, and geventhttpclient's HTTPParseError & co.
            raise TransportError("connect", f"{url}: {exc}") from exc
        return _Stream(raw)
