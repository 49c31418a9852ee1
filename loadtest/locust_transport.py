"""`Transport` over Locust's FastHttpSession, reading event streams line by line.

Lines are read with geventhttpclient's `readline`, not `iter_lines`/`iter_content`, which
wait for 1 KiB and would add ~60 ms to every TTFT (TRAPS.md 1). Requests go through the
session's user agent directly, so Locust's own request row (timed at headers) never fires.
Deadlines are gevent timeouts around each blocking read. After a read that had to wait for
the network, `yield_to_others` lets the other greenlets woken by the same poll take their
timestamps before this one parses: under load, bursts of tokens from many streams arrive
together, and a stamp taken after everyone else's parsing would be late by all of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gevent
from locust.contrib.fasthttp import FastHttpSession

from loadtest.transport import StreamingResponse, TransportError

__all__ = ["LocustTransport"]


class _Deadline(Exception):
    """Raised by gevent.Timeout inside a read that passed the request's deadline."""


class _Stream:
    def __init__(self, response: Any) -> None:
        self._response = response
        self._raw = response._response
        self.status = int(response.status_code)
        self._waited = True  # for the headers

    def readline(self, timeout_s: float | None = None) -> bytes:
        if b"\n" in self._raw._body_buffer:
            # Already received (an event's blank line comes in the same packet as its data
            # line): no read can block, so no deadline timer is needed — half of all lines.
            return bytes(self._raw.readline(b"\n"))
        try:
            with gevent.Timeout(timeout_s, _Deadline):
                line = bytes(self._raw.readline(b"\n"))
        except (_Deadline, TimeoutError) as exc:
            raise TransportError("timeout", "no data before the deadline") from exc
        except Exception as exc:  # OSError, and geventhttpclient's HTTPConnectionClosed & co.
            raise TransportError("connect", f"connection lost: {exc!r}") from exc
        self._waited = True
        return line

    def yield_to_others(self) -> None:
        if self._waited:
            self._waited = False
            gevent.sleep(0)  # runs again once the greenlets already woken have had their turn

    def read(self) -> bytes:
        try:
            return bytes(self._response.content or b"")
        except OSError:
            return b""

    def close(self) -> None:
        raw = self._raw
        if raw is not None and not raw.message_complete and raw._sock is not None:
            # A half-read stream must not go back to the pool: close its connection.
            raw._pool.release_socket(raw._sock)
            raw._sock = None


class LocustTransport:
    def __init__(self, session: FastHttpSession, base_url: str) -> None:
        self._session = session
        self._base_url = base_url.rstrip("/")

    def post(
        self, path: str, body: bytes, headers: Mapping[str, str], timeout_s: float | None = None
    ) -> StreamingResponse:
        url = self._base_url + path
        response: Any
        try:
            with gevent.Timeout(timeout_s, _Deadline):
                response = self._session.client.urlopen(
                    url, method="POST", payload=body, headers=dict(headers)
                )
        except (_Deadline, TimeoutError) as exc:
            raise TransportError("timeout", f"no response from {url} before the deadline") from exc
        except Exception as exc:
            response = getattr(exc, "response", None)
            if response is None or getattr(response, "_response", None) is None:
                raise TransportError("connect", f"{url}: {exc}") from exc
        return _Stream(response)
