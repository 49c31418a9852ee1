"""Fault injection for the simulators: what a misbehaving server does to a load test.

Engine-level faults (a stall of every stream, a decode slowdown) shift token due times;
request-level faults (error responses, cut streams, malformed events, hung requests) are
drawn per request, in arrival order, from a seeded generator; server-level faults (refusing
connections at start, a restart) are handled by `server.py`. All times are simulated
seconds since the server started, divided by `speed` like every other simulated duration.
Every injected fault is written to the optional request log so tests can count them.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    from services.sim.engine import SimSequence

__all__ = ["Delivery", "ErrorFault", "FaultConfig", "FaultPlan", "RequestFault", "RequestLog"]

FaultKind = Literal["none", "error", "cut", "malformed", "hang"]


class ErrorFault(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: int = Field(ge=400, le=599)
    rate: float = Field(gt=0, le=1)


class FaultConfig(BaseModel):
    """What to break, how often and when (bench.yaml `sim.faults`, or `quantbench sim` flags)."""

    model_config = ConfigDict(extra="forbid")

    stall_at_s: float | None = Field(default=None, ge=0)
    stall_for_s: float = Field(default=0.0, ge=0)
    errors: list[ErrorFault] = []
    cut_rate: float = Field(default=0.0, ge=0, le=1)
    malformed_rate: float = Field(default=0.0, ge=0, le=1)
    fault_after_events: int = Field(default=2, ge=0)  # events sent before a cut or bad event
    hang_rate: float = Field(default=0.0, ge=0, le=1)
    refuse_for_s: float = Field(default=0.0, ge=0)
    restart_at_s: float | None = Field(default=None, ge=0)
    restart_down_s: float = Field(default=1.0, ge=0)
    slowdown: float = Field(default=1.0, gt=0)
    seed: int = 0

    @model_validator(mode="after")
    def _rates_fit(self) -> FaultConfig:
        total = (
            self.cut_rate + self.malformed_rate + self.hang_rate + sum(e.rate for e in self.errors)
        )
        if total > 1:
            raise ValueError(f"fault rates add up to {total:g}; they must not exceed 1")
        return self


@dataclass
class Delivery:
    """What a handler actually sent: tokens, and how late each was against its due time."""

    tokens_sent: int = 0
    lateness_ms: list[float] = field(default_factory=list)

    def sent(self, now: float, due: float) -> None:
        self.tokens_sent += 1
        self.lateness_ms.append(round((now - due) * 1000.0, 3))


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

    def at(self, simulated_s: float | None) -> float | None:
        """Monotonic time of a simulated offset from the start (None stays None)."""
        return None if simulated_s is None else self.t0 + simulated_s / self.speed

    @property
    def stall_window(self) -> tuple[float, float] | None:
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

    def stalled(self, start: float, due: float) -> float:
        """`due` for work that began at `start`, pushed back by the part of the stall it meets."""
        window = self.stall_window
        if window is None or due < window[0]:
            return due
        begin = max(start, window[0])
        return due + max(0.0, window[1] - begin)

    def record(
        self,
        arrival: float,
        fault: RequestFault,
        seq: SimSequence | None,
        delivery: Delivery,
        request_id: str | None = None,
    ) -> None:
        """Log one finished request: its times on the wall clock, tokens sent, fault injected.

        `seq` is None for a request answered before reaching the engine (an error, a hang).
        """
        if self._log is None:
            return

        def wall(t: float | None) -> float | None:
            return None if t is None else t + self._wall_offset

        self._log.write(
            {
                "seq": None if seq is None else seq.seq_id,
                "request_id": request_id,
                "arrival": wall(arrival),
                "first_token": wall(seq.first_token) if seq else None,
                "last_token": wall(seq.last_token) if seq else None,
                "prompt_tokens": seq.prompt_tokens if seq else None,
                "max_tokens": seq.max_tokens if seq else None,
                "tokens_sent": delivery.tokens_sent,
                "lateness_ms": delivery.lateness_ms,
                "finished_reason": seq.finished_reason if seq else None,
                "fault": fault.kind,
                "status": fault.status,
            }
        )

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
