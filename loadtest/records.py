"""The per-request record: one typed row per scheduled request, where a failure is data.

`analysis` reads run directories through this schema and nothing else of `loadtest`.
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

__all__ = [
    "REQUESTS_FILE",
    "SCHEDULED_FILE",
    "STAGES_FILE",
    "Outcome",
    "RecordWriter",
    "RequestRecord",
    "ScheduledRecord",
    "StageRecord",
]

REQUESTS_FILE = "requests.jsonl"
STAGES_FILE = "stages.jsonl"
SCHEDULED_FILE = "scheduled.jsonl"


class Outcome(StrEnum):
    """Every scheduled request ends as exactly one of these (MEASUREMENT.md)."""

    OK = "ok"
    HTTP_ERROR = "http_error"
    CONNECT_ERROR = "connect_error"
    TIMEOUT_CONNECT = "timeout_connect"
    TIMEOUT_TTFT = "timeout_ttft"
    TIMEOUT_TOTAL = "timeout_total"
    TRUNCATED_STREAM = "truncated_stream"
    MALFORMED_EVENT = "malformed_event"
    SERVER_ERROR_EVENT = "server_error_event"
    #: a complete stream whose server ended the generation early: finish_reason "abort" or
    #: "error" (vLLM), or fewer tokens than a pinned output length
    ABORTED = "aborted"
    CANCELLED = "cancelled"
    NOT_SENT = "not_sent"


class RequestRecord(BaseModel):
    """One request, client side. Timestamps are monotonic nanoseconds of the generator process.

    Derived figures (`ttft_ms`, `tpot_ms`, `e2e_ms`, `itl_ms`) follow MEASUREMENT.md and are
    filled by `loadtest.timing.derive`; they are None where undefined.
    """

    model_config = ConfigDict(extra="forbid")

    target: str
    stage: int
    mode: Literal["concurrency", "rate", "batch", "replay"]
    load: float
    warmup: bool = False
    user: int = 0
    seq: int = 0
    request_id: str = ""
    #: replay: the request's data row in the trace file (0 = the first); sessions (a
    #: conversation, or a trace's session id): which one, and the turn in it (0 = the first)
    trace_row: int | None = None
    session: int | None = None
    turn: int | None = None
    outcome: Outcome
    http_status: int | None = None
    error: str | None = None
    wall_sent_s: float | None = None
    scheduled_ns: int
    sent_ns: int | None = None
    first_byte_ns: int | None = None
    first_token_ns: int | None = None
    last_token_ns: int | None = None
    end_ns: int | None = None
    prompt_tokens: int | None = None
    output_tokens: int = 0
    token_count_source: Literal["usage", "events"] = "events"
    events: int = 0
    schedule_lag_ms: float | None = None
    #: the longest any read of this response's body waited, after the kernel received its
    #: bytes, before the generator took them (its stamps are the kernel's, so this is how
    #: busy the generator was, not an error in them); None: the transport has no such stamp
    read_lag_ms: float | None = None
    ttft_ms: float | None = None
    tpot_ms: float | None = None
    e2e_ms: float | None = None
    itl_ms: list[float] = []


class StageRecord(BaseModel):
    """One load stage of one target: its window on both clocks.

    `stage` numbers a target's stages uniquely across repeats; `repeat` (0 for the first run
    of the stages) says which repetition of the sweep a stage belongs to. A stage is measured
    for at least `duration_s` and until `min_ok` ok samples, at most `max_duration_s`;
    `ended_by` says which ended it: `duration`, `samples` (extended until its count),
    `cap` (extended to `max_duration_s` without reaching it), `errors` (not extended: its
    error rate made it invalid anyway), `slo` (a search's stage whose SLO verdict was
    already clear: `loadtest.shapes.SloStage`) or `stopped` (the test stopped inside it).
    `valid` and `invalid_reason` are legacy fields: validity is decided by the analysis
    (summary.csv).
    """

    model_config = ConfigDict(extra="forbid")

    target: str
    stage: int
    mode: Literal["concurrency", "rate", "batch", "replay"]
    load: float
    repeat: int = 0
    warmup_s: float
    start_wall_s: float
    end_wall_s: float
    start_ns: int
    end_ns: int
    completed: bool = True
    ended_by: Literal["duration", "samples", "cap", "errors", "slo", "stopped"] | None = None
    min_ok: int | None = None
    duration_s: float | None = None
    max_duration_s: float | None = None
    workers_lost: int = 0
    valid: bool | None = None
    invalid_reason: str | None = None


class ScheduledRecord(BaseModel):
    """Journal line written just before a request is sent, so a resumed run can tell whether
    every request of a stage has its record (a killed process loses the ones in flight)."""

    model_config = ConfigDict(extra="forbid")

    target: str
    stage: int
    request_id: str


class RecordWriter:
    """Appends records as JSON lines, each in one `write` to an O_APPEND file.

    Nothing is buffered, so a killed process loses nothing it wrote, and several generator
    processes can append to the same file without interleaving their lines.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, record: BaseModel) -> None:
        data = (record.model_dump_json() + "\n").encode()
        while data:
            written = os.write(self._fd, data)
            data = data[written:]

    def close(self) -> None:
        os.close(self._fd)
