"""The seam through which whoever builds a server app can watch and disturb its streams.

A server writes every streamed event through `write_event` (or a stream's `EventWriter`,
which also writes several events at once), and tells the request's tap what it admitted
and how the request ended. With no tap attached (a real deployment) these are plain writes.
The simulator attaches a tap from its fault middleware (services/sim/faults.py) to cut
connections, slip in malformed events and keep its request log; the servers never import it:
the simulator may depend on a server, never the reverse.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from aiohttp import web

__all__ = ["Event", "EventWriter", "StreamTap", "Write", "attach_tap", "tap_of", "write_event"]

Write = Callable[[bytes], Awaitable[None]]
#: one event to write: its bytes, the generated tokens it carries, when the engine made them
Event = tuple[bytes, int, float | None]
_KEY = "quantbench.stream_tap"


class StreamTap(Protocol):
    """One request's observer; every method is cheap and never raises for a normal request."""

    def admitted(self, prompt_tokens: int, max_tokens: int, arrival: float | None) -> None:
        """The request passed validation and went to the engine; `arrival`: when the server
        took it in (the running loop's clock), if it times its TTFT from there."""

    def will_act(self) -> bool:
        """Whether the tap may still act before some later event (cut the connection, slip
        an event in): while it may, events are written one at a time, each after
        `before_event`; once it may not, events ready together go out in one write."""

    async def before_event(self, request: web.Request, write: Write, tokens: int) -> bool:
        """Called before each event (carrying `tokens` generated tokens) while the tap
        `will_act`; False means the connection was cut: write nothing more."""

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


class EventWriter:
    """Writes one stream's events through its tap, the tap looked up once per stream.

    `write_all` sends events that are ready together in one write (the bytes are the same
    as writing them one by one), unless the tap may still act before one of them: then each
    goes out alone, after `before_event`, as `write_event` would send it.
    """

    __slots__ = ("_request", "_tap", "_write")

    def __init__(self, request: web.Request, write: Write) -> None:
        self._request = request
        self._write = write
        self._tap = tap_of(request)

    async def __call__(self, data: bytes, tokens: int = 0, due: float | None = None) -> None:
        """Write one event (or an end marker)."""
        await self.write_all(((data, tokens, due),))

    async def write_all(self, events: Sequence[Event]) -> None:
        """Write `events` in order.

        Raises `ConnectionResetError` if the tap cut the connection, as a client that went
        away would make the write fail.
        """
        tap = self._tap
        if tap is not None and tap.will_act():
            for data, tokens, due in events:
                if not await tap.before_event(self._request, self._write, tokens):
                    raise ConnectionResetError("the connection was cut (injected fault)")
                await self._write(data)
                tap.sent(tokens, due)
            return
        await self._write(events[0][0] if len(events) == 1 else b"".join(e[0] for e in events))
        if tap is not None:
            for _, tokens, due in events:
                tap.sent(tokens, due)


async def write_event(
    request: web.Request, write: Write, data: bytes, *, tokens: int = 0, due: float | None = None
) -> None:
    """Write one event (or an end marker) through the request's tap.

    Raises `ConnectionResetError` if the tap cut the connection, as a client that went away
    would make the write fail.
    """
    await EventWriter(request, write)(data, tokens, due)
