"""The trace formats quantbench reads, by name, and how a file's format is told apart.

Columns and units as their publishers document them:
- `mooncake`: JSON lines `{"timestamp": ms, "input_length", "output_length", "hash_ids"}`
  (kvcache-ai/Mooncake `FAST25-release/README.md` and `traces/*.jsonl`: ms from the first
  request, one hash id per 512-token block); `session_id` as in NVIDIA AIPerf's
  `src/aiperf/dataset/loader/mooncake_trace.py` is read when present.
- `burstgpt`: CSV `Timestamp` (s), `Model`, `Request tokens`, `Response tokens`, `Total
  tokens`, `Log Type` (HPMLL/BurstGPT `README.md`, "Schema"); rows of failed requests have
  0 response tokens; newer releases add `Session ID`, read when present.
- `azure`: CSV `TIMESTAMP` (invocation time, e.g. `2023-11-16 18:15:46.6805900`; the 2024
  week-long files add `+00:00`), `ContextTokens`, `GeneratedTokens`
  (Azure/AzurePublicDataset `AzureLLMInferenceDataset2023.md`, `...2024.md`).
- `jsonl` / `csv`: any other trace, with a `ColumnMapping`.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from loadtest.traces.config import ColumnMapping, TimestampUnit
from loadtest.traces.model import TraceError

__all__ = ["FORMATS", "Layout", "csv_header", "first_line", "resolve_layout"]

FileKind = Literal["jsonl", "csv"]


@dataclass(frozen=True)
class Layout:
    """Where a format keeps each field; `optional` columns may be absent from a file."""

    name: str
    kind: FileKind
    timestamp: str
    unit: TimestampUnit
    input_tokens: str
    output_tokens: str
    session: str | None = None
    hash_ids: str | None = None
    optional: frozenset[str] = frozenset()

    @property
    def required(self) -> tuple[str, ...]:
        return (self.timestamp, self.input_tokens, self.output_tokens)

    @property
    def columns(self) -> tuple[str, ...]:
        extra = (name for name in (self.session, self.hash_ids) if name is not None)
        return (*self.required, *extra)


FORMATS: dict[str, Layout] = {
    "mooncake": Layout(
        "mooncake",
        "jsonl",
        "timestamp",
        "ms",
        "input_length",
        "output_length",
        session="session_id",
        hash_ids="hash_ids",
        optional=frozenset({"session_id", "hash_ids"}),
    ),
    "burstgpt": Layout(
        "burstgpt",
        "csv",
        "Timestamp",
        "s",
        "Request tokens",
        "Response tokens",
        session="Session ID",
        optional=frozenset({"Session ID"}),
    ),
    "azure": Layout("azure", "csv", "TIMESTAMP", "datetime", "ContextTokens", "GeneratedTokens"),
}


def _from_mapping(kind: FileKind, mapping: ColumnMapping) -> Layout:
    if kind == "csv" and mapping.hash_ids is not None:
        raise TraceError("mapping.hash_ids needs a JSON lines trace (a list per row)")
    return Layout(
        kind,
        kind,
        mapping.timestamp,
        mapping.timestamp_unit,
        mapping.input_tokens,
        mapping.output_tokens,
        session=mapping.session,
        hash_ids=mapping.hash_ids,
    )


def first_line(path: Path) -> str:
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            for line in handle:
                if line.strip():
                    return line
    except (OSError, UnicodeDecodeError) as exc:
        raise TraceError(f"{path}: cannot read ({exc})") from exc
    raise TraceError(f"{path}: the file is empty")


def csv_header(path: Path) -> list[str]:
    return next(csv.reader([first_line(path)]))


def resolve_layout(
    path: Path, format: str = "auto", mapping: ColumnMapping | None = None
) -> Layout:
    """The layout for `format`; `auto` tells Mooncake JSON lines and BurstGPT or Azure CSV
    apart by their first line, and a mapping's file kind by its suffix."""
    if format in FORMATS:
        if mapping is not None:
            raise TraceError(f"format {format} has fixed columns; a mapping is for jsonl or csv")
        return FORMATS[format]
    if format in ("jsonl", "csv"):
        if mapping is None:
            raise TraceError(f"format {format} needs a mapping of its columns")
        return _from_mapping(format, mapping)  # type: ignore[arg-type]
    if format != "auto":
        raise TraceError(f"unknown trace format {format!r}; use one of: auto, {_names()}")
    if mapping is not None:
        return _from_mapping("csv" if path.suffix.lower() == ".csv" else "jsonl", mapping)
    first = first_line(path)
    if first.lstrip().startswith("{"):
        return FORMATS["mooncake"]
    header = set(next(csv.reader([first])))
    if "Request tokens" in header:
        return FORMATS["burstgpt"]
    if "ContextTokens" in header:
        return FORMATS["azure"]
    raise TraceError(
        f"{path}:1: cannot tell the trace format (not a Mooncake JSON line, nor a BurstGPT or "
        f"Azure CSV header); name it ({_names()}) and map the columns of a jsonl or csv trace"
    )


def _names() -> str:
    return ", ".join([*FORMATS, "jsonl", "csv"])
