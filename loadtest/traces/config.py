"""The `workload.trace` config: which file, in which format, and the time and volume controls.

A trace replaces the synthetic length distributions and the arrival schedule: each row is one
request, sent at its timestamp (÷ `speedup`) with its own input and output token counts.
`load.mode: replay` with `stages: [1, 2, 4]` replays it at 1×, 2× and 4× its rate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from loadtest.durations import Duration

__all__ = [
    "ColumnMapping",
    "GrowthStages",
    "TimestampUnit",
    "TraceConfig",
    "TraceFormat",
]

TraceFormat = Literal["auto", "mooncake", "burstgpt", "azure", "jsonl", "csv"]
TimestampUnit = Literal["s", "ms", "us", "ns", "datetime"]
GrowthStages = list[Annotated[float, Field(gt=0)]]  # rate multipliers of `load.mode: replay`


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ColumnMapping(_Strict):
    """Which columns (CSV) or keys (JSON lines) of a generic trace hold what.

    `timestamp_unit`: `s`, `ms`, `us`, `ns` for numbers (any origin: offsets are taken from the
    earliest), or `datetime` for ISO 8601 text (naive times are read as UTC). `session` and
    `hash_ids` are optional; `hash_ids` (a list of integers per row) needs JSON lines.
    """

    timestamp: str
    timestamp_unit: TimestampUnit = "s"
    input_tokens: str
    output_tokens: str
    session: str | None = None
    hash_ids: str | None = None


class TraceConfig(_Strict):
    """A production trace to replay, and how much of it (see the module docstring).

    `start`/`duration` cut a window out of the trace (trace time, before `speedup`); `sample`
    keeps a seeded share of its rows (each row independently, so bursts keep their shape);
    `block_size`: tokens per `hash_ids` block (512 in Mooncake's traces).
    """

    file: Path
    format: TraceFormat = "auto"
    mapping: ColumnMapping | None = None
    speedup: float = Field(default=1.0, gt=0)
    start: Duration = 0.0
    duration: Duration | None = None
    sample: float = Field(default=1.0, gt=0, le=1)
    block_size: int = Field(default=512, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _from_path(cls, data: object) -> object:
        if isinstance(data, str | Path):
            return {"file": data}
        return data

    @model_validator(mode="after")
    def _mapping_fits_format(self) -> TraceConfig:
        if self.duration is not None and self.duration <= 0:
            raise ValueError("duration must be above 0 (leave it out to replay to the end)")
        if self.format in ("jsonl", "csv") and self.mapping is None:
            raise ValueError(f"format {self.format} needs a `mapping` of its columns")
        if self.format in ("mooncake", "burstgpt", "azure") and self.mapping is not None:
            raise ValueError(
                f"format {self.format} has fixed columns; a `mapping` is for jsonl or csv"
            )
        return self
