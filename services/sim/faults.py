"""Fault injection for every simulated personality, and the simulator's own request log.

Engine-level faults (a stall of every stream, a decode slowdown, an engine-side abort) are
applied by the engine (`engine.py`) from this module's `FaultPlan`. Request-level faults (error
responses, cut streams, malformed events, hung requests) are drawn per request, in arrival
order, from a seeded generator by `fault_middleware`, which attaches a `StreamFaults` tap
(services/stream_tap.py) that the personality's one event-writing call consults. The same tap
counts what was written, so every personality's request log says the same things.
Server-level faults (refusing connections at start, a restart) are carried out by `server.py`.
All times are simulated seconds since the server started, divided by `speed`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from aiohttp import web
from aiohttp.typedefs import Middleware

from services.sim.config import FaultConfig
from services.stream_tap import Write, attach_tap

__all__ = [
    "FaultKind",
    "FaultPlan",
    "RequestFault",
    "RequestLog",
    "StreamFaults",
    "fault_middleware",
]

FaultKind = Literal["none", "error", "cut", "malformed", "hang"]
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ErrorResponse = Callable[[int], web.Response]


@dataclass(frozen=True)
class RequestFault:
    """The fault drawn for one request; a cut or a malformed event comes after `after_events`
    events of the stream."""

    kind: FaultKind = "none"
    status: int | None = None
    after_events: int = 0


class RequestLog:
    """JSON lines, one per request, flushed as written: the simulator's own account."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = path.open("a", encoding="utf-8")

    def write(self, entry: dict[str, Any]) -> None:
        self._file.write(json.dumps(entry, separators=(",", ":")) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class FaultPlan:
    """Fault decisions of one server. `t0` is the monotonic time the server started."""

    def __init__(
        self,
        config: FaultConfig,
        speed: float = 1.0,
        t0: float | None = None,
        log: RequestLog | None = None,
    ) -> None:
        self.config = config
        self.speed = speed
        self.t0 = time.monotonic() if t0 is None else t0
        self._log = log
        self._wall_offset = time.time() - time.monotonic()
        self._rng = random.Random(config.seed)
        self._abort_rng = random.Random(config.seed + 1)  # independent of the request draws
        self._answered = 0
        self._ids = itertools.count()
        self.restart_due = asyncio.Event()  # set once `restart_after_requests` were answered
        self.clock_started = asyncio.Event()  # fault times count from `t0` once this is set
        if config.times_from == "start":
            self.clock_started.set()
        self._table: list[tuple[float, RequestFault]] = []
        cumulative = 0.0
        for error in config.errors:
            cumulative += error.rate
            self._table.append((cumulative, RequestFault("error", error.status)))
        for kind, rate in (("cut", config.cut_rate), ("malformed", config.malformed_rate),
                           ("hang", config.hang_rate)):  # fmt: skip
            if rate:
                cumulative += rate
                self._table.append((cumulative, RequestFault(kind)))  # type: ignore[arg-type]

    def arrived(self) -> None:
        """A generation request arrived: with `times_from: first_request`, the first one
        starts the fault clock."""
        if not self.clock_started.is_set():
            self.t0 = time.monotonic()
            self.clock_started.set()

    def at(self, simulated_s: float | None) -> float | None:
        """Monotonic time of a simulated offset from the start (None stays None)."""
        return None if simulated_s is None else self.t0 + simulated_s / self.speed

    @property
    def stall_window(self) -> tuple[float, float] | None:
        if not self.clock_started.is_set():
            return None
        start = self.at(self.config.stall_at_s)
        if start is None or self.config.stall_for_s <= 0:
            return None
        return start, start + self.config.stall_for_s / self.speed

    def draw(self) -> RequestFault:
        """The next request's fault (one draw per request, in arrival order)."""
        u = self._rng.random()
        for threshold, fault in self._table:
            if u < threshold:
                if fault.kind in ("cut", "malformed"):
                    return RequestFault(fault.kind, after_events=self.config.fault_after_events)
                return fault
        return RequestFault()

    def draw_abort(self) -> int | None:
        """For a sequence entering the engine: after how many tokens the engine aborts it."""
        if self.config.abort_rate and self._abort_rng.random() < self.config.abort_rate:
            return self.config.fault_after_events
        return None

    def stalled(self, start: float, due: float) -> float:
        """`due` for work that began at `start`, pushed back by the part of the stall it meets."""
        if self.config.stall_at_s is None:  # no stall configured: every token (hot path)
            return due
        window = self.stall_window
        if window is None or due < window[0]:
            return due
        begin = max(start, window[0])
        return due + max(0.0, window[1] - begin)

    def answered(self, tap: StreamFaults) -> None:
        """A generation request ended: log it, and count it towards a scheduled restart."""
        self._answered += 1
        limit = self.config.restart_after_requests
        if limit is not None and self._answered >= limit:
            self.restart_due.set()
        if self._log is not None:
            self._log.write(tap.entry(next(self._ids), self._wall_offset))

    def close(self) -> None:
        if self._log is not None:
            self._log.close()


class StreamFaults:
    """One request's tap (services/stream_tap.py): its fault and an account of its stream."""

    def __init__(
        self, fault: RequestFault, arrival: float, malformed: bytes, request_id: str | None
    ) -> None:
        self.fault = fault
        self.arrival = arrival
        self.request_id = request_id  # the client's X-Request-Id, to match logs to records
        self.prompt_tokens: int | None = None
        self.max_tokens: int | None = None
        self.tokens_sent = 0
        self.lateness_ms: list[float] = []
        self.first_token: float | None = None
        self.last_token: float | None = None
        self.finished_reason: str | None = None
        self._malformed = malformed
        self._events = 0  # token-bearing events so far
        self._disturbing = fault.kind in ("cut", "malformed")
        self._done = False  # the fault was carried out
        self._loop = asyncio.get_running_loop()

    # the StreamTap protocol ---------------------------------------------------------------
    def admitted(self, prompt_tokens: int, max_tokens: int, arrival: float | None) -> None:
        self.prompt_tokens, self.max_tokens = prompt_tokens, max_tokens
        if arrival is not None:  # the server's own arrival stamp: its due times count from it
            self.arrival = arrival

    def will_act(self) -> bool:
        return self._disturbing and not self._done

    async def before_event(self, request: web.Request, write: Write, tokens: int) -> bool:
        """A cut or a malformed event comes just before the token-bearing event that follows
        `after_events` of them (role-only chunks and end markers do not count)."""
        if tokens <= 0 or self._done:
            return True
        if self._events == self.fault.after_events:
            self._done = True
            if self.fault.kind == "cut":
                if request.transport is not None:
                    request.transport.close()  # the connection drops mid-stream
                return False
            if self.fault.kind == "malformed":
                await write(self._malformed)
        self._events += 1
        return True

    def sent(self, tokens: int, due: float | None) -> None:
        if tokens <= 0:
            return
        self.tokens_sent += tokens
        if due is not None:
            self.lateness_ms.append(round((self._loop.time() - due) * 1000.0, 3))
            if self.first_token is None:
                self.first_token = due
            self.last_token = due

    def finished(self, reason: str | None) -> None:
        self.finished_reason = reason

    # ------------------------------------------------------------------------------------------
    def entry(self, seq: int, wall_offset: float) -> dict[str, Any]:
        """The request-log line: times on the wall clock, tokens written, the fault drawn."""

        def wall(t: float | None) -> float | None:
            return None if t is None else t + wall_offset

        return {
            "seq": seq,
            "request_id": self.request_id,
            "arrival": wall(self.arrival),
            "first_token": wall(self.first_token),
            "last_token": wall(self.last_token),
            "prompt_tokens": self.prompt_tokens,
            "max_tokens": self.max_tokens,
            "tokens_sent": self.tokens_sent,
            "lateness_ms": self.lateness_ms,
            "finished_reason": self.finished_reason,
            "fault": self.fault.kind,
            "status": self.fault.status,
        }


def fault_middleware(
    faults: FaultPlan,
    generation_paths: Iterable[str],
    error_response: ErrorResponse,
    malformed: bytes,
) -> Middleware:
    """Middleware drawing a fault for each POST to one of `generation_paths`.

    Injected errors are answered with the stack's own error body (`error_response`); hung
    requests are held until the client gives up; every other request gets a `StreamFaults` tap.
    Each request is logged once it is answered.
    """
    paths = frozenset(generation_paths)

    @web.middleware
    async def middleware(request: web.Request, handler: _Handler) -> web.StreamResponse:
        if request.method != "POST" or request.path not in paths:
            return await handler(request)
        arrival = asyncio.get_running_loop().time()
        faults.arrived()
        tap = StreamFaults(faults.draw(), arrival, malformed, request.headers.get("X-Request-Id"))
        try:
            if tap.fault.kind == "hang":
                await asyncio.Future()  # until the client gives up and the handler is cancelled
            if tap.fault.kind == "error":
                return error_response(tap.fault.status or 500)
            attach_tap(request, tap)
            return await handler(request)
        finally:
            faults.answered(tap)

    return middleware
