"""Request-level faults for every simulated personality, in two small seams.

`fault_middleware` draws each generation request's fault, answers injected errors with the
stack's own error body and holds hung requests until the client gives up; `StreamFaults`
(found on the request) is consulted by the personality's single event-writing method to cut
the connection or slip in a malformed event. Requests are logged to the fault plan's log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web
from aiohttp.typedefs import Middleware

from services.sim.faults import Delivery, FaultPlan, RequestFault

__all__ = ["StreamFaults", "fault_middleware", "stream_faults"]

_KEY = "quantbench.stream_faults"
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ErrorResponse = Callable[[int], web.Response]


class StreamFaults:
    """One request's fault, its delivery record, and whether its handler logged it already."""

    def __init__(
        self, fault: RequestFault, arrival: float, malformed: bytes, request_id: str | None
    ) -> None:
        self.fault = fault
        self.arrival = arrival
        self.request_id = request_id  # the client's X-Request-Id, to match logs to records
        self.delivery = Delivery()
        self.logged = False
        self._malformed = malformed
        self._events = 0

    async def before_event(
        self, request: web.Request, write: Callable[[bytes], Awaitable[None]]
    ) -> bool:
        """Call before writing each event; False means the stream was cut: write nothing more."""
        if self._events == self.fault.after_events:
            if self.fault.kind == "cut":
                if request.transport is not None:
                    request.transport.close()  # the connection drops mid-stream
                return False
            if self.fault.kind == "malformed":
                await write(self._malformed)
        self._events += 1
        return True


def stream_faults(request: web.Request) -> StreamFaults | None:
    """The fault state the middleware attached to this request, if faults are configured."""
    found = request.get(_KEY)
    return found if isinstance(found, StreamFaults) else None


def fault_middleware(
    faults: FaultPlan,
    generation_paths: Iterable[str],
    error_response: ErrorResponse,
    malformed: bytes,
) -> Middleware:
    """Middleware drawing a fault for each POST to one of `generation_paths`."""
    paths = frozenset(generation_paths)

    @web.middleware
    async def middleware(request: web.Request, handler: _Handler) -> web.StreamResponse:
        if request.method != "POST" or request.path not in paths:
            return await handler(request)
        arrival = asyncio.get_running_loop().time()
        request_id = request.headers.get("X-Request-Id")
        state = StreamFaults(faults.draw(), arrival, malformed, request_id)
        try:
            if state.fault.kind == "hang":
                await asyncio.Future()  # until the client gives up and the handler is cancelled
            if state.fault.kind == "error":
                return error_response(state.fault.status or 500)
            request[_KEY] = state
            return await handler(request)
        finally:
            if not state.logged:
                faults.record(arrival, state.fault, None, state.delivery, request_id)

    return middleware
