"""A scripted transport and clock: each piece of the body arrives at a chosen nanosecond."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from loadtest.transport import TransportError


@dataclass
class ScriptedClock:
    now_ns: int = 0

    def __call__(self) -> int:
        return self.now_ns


@dataclass
class ScriptedResponse:
    """`lines`: (arrival ns, bytes) — each entry is what one read returns (a line, several
    events or part of one), arriving at that time. The read returns `read_lag_ns` later (a
    busy generator); with `kernel_stamps` it also says how long ago the bytes arrived."""

    clock: ScriptedClock
    lines: list[tuple[int, bytes]]
    status: int = 200
    content_type: str | None = "text/event-stream"
    body: bytes = b""
    fail_with: TransportError | None = None
    closed: bool = False
    #: how far the clock moves while other streams run in `yield_to_others`
    yield_ns: int = 0
    yields: int = 0
    read_lag_ns: int = 0
    kernel_stamps: bool = False
    headers_age_ns: int | None = None

    def read_chunk(self, timeout_s: float | None = None) -> tuple[bytes, int | None]:
        if not self.lines:
            if self.fail_with is not None:
                raise self.fail_with
            return b"", None
        at_ns, data = self.lines.pop(0)
        self.clock.now_ns = at_ns + self.read_lag_ns
        return data, (self.read_lag_ns if self.kernel_stamps else None)

    def read(self) -> bytes:
        return self.body

    def yield_to_others(self) -> None:
        self.yields += 1
        self.clock.now_ns += self.yield_ns

    def close(self) -> None:
        self.closed = True


@dataclass
class ScriptedTransport:
    """Returns `response` after moving the clock to `headers_at_ns`; records what was sent."""

    clock: ScriptedClock
    response: ScriptedResponse | None
    headers_at_ns: int = 0
    error: TransportError | None = None
    sent: list[tuple[str, bytes, dict[str, str]]] = field(default_factory=list)

    def post(
        self, path: str, body: bytes, headers: Mapping[str, str], timeout_s: float | None = None
    ) -> ScriptedResponse:
        self.sent.append((path, body, dict(headers)))
        if self.error is not None:
            raise self.error
        self.clock.now_ns = self.headers_at_ns
        assert self.response is not None
        return self.response
