"""The seam through which whoever builds a server app can watch and disturb its streams.

A server writes every streamed event through `write_event`, and tells the request's tap what it
admitted and how the request ended. With no tap attached (a real deployment) these are plain
writes. The simulator attaches a tap from its fault middleware (services/sim/faults.py) to cut
connections, slip in malformed events and keep its request log; the servers never import it:
the simulator may depend on a server, never the reverse.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from aiohttp import web

__all__ = ["StreamTap", "Write", "attach_tap", "tap_of", "write_event"]

Write = Callable[[bytes], Awaitable[None]]
_KEY = "quantbench.stream_tap"


class StreamTap(Protocol):
    """One request's observer; every method is cheap and never raises for a normal request."""

    def admitted(self, prompt_tokens: int, max_tokens: int, arrival: float | None) -> None:
        """The request passed validation and went to the engine; `arrival`: when the server
        took it in (the running loop's clock), if it times its TTFT from there."""

    async def before_event(self, request: web.Request, write: Write, tokens: int) -> bool:
        """Called before each event (carrying `tokens` generated tokens); False means the
        connection was cut: write nothing more."""

    def sent(self, tokens: int, due: float | None) -> None:
        """An event carrying `tokens` generated tokens was written; `due` is when the engine
        produced them (the running loop's clock), if the server knows."""

    def finished(self, reason: str | None) -> None:
        """How generation ended (`length`, `stop`, `abort`, `error`; None: never started)."""


def attach_tap(request: web.Request, tap: StreamTap) -> None:
    request[_KEY] = tap


def tap_of(request: web.Request) -> StreamTap | None:
    """The tap attached to this request, if any."""
    found: StreamTap | None = request.get(_KEY)
    return found


async def write_event(
    request: web.Request, write: Write, data: bytes, *, tokens: int = 0, due: float | None = None
) -> None:
    """Write one event (or an end marker) through the request's tap.

    Raises `ConnectionResetError` if the tap cut the connection, as a client that went away
    would make the write fail.
    """
    tap = tap_of(request)
    if tap is not None and not await tap.before_event(request, write, tokens):
        raise ConnectionResetError("the connection was cut (injected fault)")
    await write(data)
    if tap is not None:
        tap.sent(tokens, due)
