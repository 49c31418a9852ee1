"""The HTTP seam under the protocol clients: a POST that returns a chunk-readable response.

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
    #: the response's Content-Type header (None: the server sent none)
    content_type: str | None
    #: how many nanoseconds before `post` returned the headers reached the host (the kernel's
    #: receive timestamp), if the transport knows it
    headers_age_ns: int | None

    def read_chunk(self, timeout_s: float | None = None) -> tuple[bytes, int | None]:
        """The body bytes that have arrived since the last call (at least one byte, waiting
        if none has), or b"" once the body has ended; and, if the transport knows it, how
        many nanoseconds before this call returned the last of them reached the host (the
        kernel's receive timestamp), else None (the caller stamps them now).

        Raises `TransportError("timeout")` if nothing arrives within `timeout_s`, and
        `TransportError("connect")` if the connection breaks.
        """
        ...

    def read(self) -> bytes:
        """The rest of the body."""
        ...

    def yield_to_others(self) -> None:
        """Called once the client has stamped what `read_chunk` (or the headers) returned.

        A cooperative transport without kernel receive stamps lets the other streams whose
        bytes arrived in the same wakeup take their timestamps now, before this one spends
        time parsing; under load that keeps a stamp from waiting behind other streams' work."""
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
        self.content_type = response.headers.get("content-type")
        self.headers_age_ns: int | None = None
        self._chunks: Iterator[bytes] = response.iter_raw()

    def read_chunk(self, timeout_s: float | None = None) -> tuple[bytes, int | None]:
        # httpx applies the read timeout given when the request was sent; per-read deadlines
        # and kernel stamps are the Locust transport's (this one serves probes and tests).
        try:
            for chunk in self._chunks:
                if chunk:
                    return chunk, None
        except httpx.TimeoutException as exc:
            raise TransportError("timeout", str(exc) or "read timed out") from exc
        except httpx.TransportError as exc:
            raise TransportError("connect", str(exc) or type(exc).__name__) from exc
        return b"", None

    def yield_to_others(self) -> None:
        """Nothing to do: httpx streams here are read one at a time."""

    def read(self) -> bytes:
        return b"".join(self._chunks)

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
