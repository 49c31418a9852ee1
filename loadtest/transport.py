"""The HTTP seam under the protocol clients: a POST that returns a line-readable response.

Locust's adapter implements it over geventhttpclient; `HttpxTransport` serves probes and
tests; a scripted fake serves timing tests. Failures to connect or time out are raised as
`TransportError` with a kind the client turns into an outcome.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Literal, Protocol

import httpx

__all__ = ["HttpxTransport", "StreamingResponse", "Transport", "TransportError"]


class TransportError(Exception):
    """The request could not be completed at the network level."""

    def __init__(self, kind: Literal["connect", "timeout_connect", "timeout"], message: str):
        super().__init__(message)
        self.kind = kind


class StreamingResponse(Protocol):
    status: int

    def readline(self, timeout_s: float | None = None) -> bytes:
        """The next line including its terminator; b"" once the body has ended.

        Raises `TransportError("timeout")` if no full line arrives within `timeout_s`.
        """
        ...

    def read(self) -> bytes:
        """The rest of the body."""
        ...

    def yield_to_others(self) -> None:
        """Called once the client has stamped what `readline` (or the headers) returned.

        A cooperative transport lets the other streams whose bytes arrived in the same
        wakeup take their timestamps now, before this one spends time parsing; under load
        that keeps a stamp from waiting behind other streams' work."""
        ...

    def close(self) -> None: ...


class Transport(Protocol):
    def post(
        self, path: str, body: bytes, headers: Mapping[str, str], timeout_s: float | None = None
    ) -> StreamingResponse:
        """Send the request; return once the response headers have arrived (within
        `timeout_s`, else `TransportError("timeout")`)."""
        ...


class _HttpxResponse:
    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self.status = response.status_code
        self._chunks: Iterator[bytes] = response.iter_raw()
        self._buffer = b""

    def readline(self, timeout_s: float | None = None) -> bytes:
        # httpx applies the read timeout given when the request was sent; per-line deadlines
        # are the Locust transport's (this one serves probes and tests).
        try:
            while b"\n" not in self._buffer:
                chunk = next(self._chunks, b"")
                if not chunk:
                    line, self._buffer = self._buffer, b""
                    return line
                self._buffer += chunk
        except httpx.TimeoutException as exc:
            raise TransportError("timeout", str(exc) or "read timed out") from exc
        except httpx.TransportError as exc:
            raise TransportError("connect", str(exc) or type(exc).__name__) from exc
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line + b"\n"

    def yield_to_others(self) -> None:
        """Nothing to do: httpx streams here are read one at a time."""

    def read(self) -> bytes:
        rest = self._buffer + b"".join(self._chunks)
        self._buffer = b""
        return rest

    def close(self) -> None:
        self._response.close()


class HttpxTransport:
    """A blocking transport over httpx, for probes and tests outside Locust."""

    def __init__(self, base_url: str, timeout_s: float = 60.0) -> None:
        self._client = httpx.Client(base_url=base_url, timeout=timeout_s)
        self._timeout = timeout_s

    def post(
        self, path: str, body: bytes, headers: Mapping[str, str], timeout_s: float | None = None
    ) -> StreamingResponse:
        request = self._client.build_request(
            "POST", path, content=body, headers=dict(headers), timeout=timeout_s or self._timeout
        )
        try:
            return _HttpxResponse(self._client.send(request, stream=True))
        except httpx.ConnectTimeout as exc:
            raise TransportError("timeout_connect", str(exc) or "connect timed out") from exc
        except httpx.TimeoutException as exc:
            raise TransportError("timeout", str(exc) or "timed out") from exc
        except httpx.TransportError as exc:
            raise TransportError("connect", str(exc) or type(exc).__name__) from exc

    def close(self) -> None:
        self._client.close()
