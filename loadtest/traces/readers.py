"""Read a trace file into a columnar `Trace`, in Arrow record batches of a few MiB.

Timestamps become seconds from the earliest request; rows out of timestamp order are sorted
(stably: equal timestamps keep file order) and counted, since a log merged from several
servers is still the same traffic. Any row that breaks the rules stops the read with one
`file:line: what` (found by `diagnose.first_problem`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.json as pjson

from loadtest.traces.config import ColumnMapping, TraceConfig
from loadtest.traces.diagnose import first_problem
from loadtest.traces.formats import Layout, csv_header, first_line, resolve_layout
from loadtest.traces.model import Trace, TraceError

__all__ = ["read_trace", "read_trace_config"]

_BLOCK_BYTES = 4 << 20
_SECONDS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


class _BadRow(Exception):
    """A batch failed a rule; `diagnose` finds which line and says what."""


@dataclass
class _Columns:
    timestamps: list[np.ndarray] = field(default_factory=list)
    inputs: list[np.ndarray] = field(default_factory=list)
    outputs: list[np.ndarray] = field(default_factory=list)
    sessions: list[pa.Array] = field(default_factory=list)
    hash_ids: list[pa.Array] = field(default_factory=list)


def _timestamps(column: pa.Array, layout: Layout) -> np.ndarray:
    """float64 seconds, or int64 nanoseconds since the epoch for `datetime`."""
    if column.null_count:
        raise _BadRow
    if layout.unit == "datetime":
        parsed = pd.to_datetime(column.to_pandas(), format="ISO8601", utc=True, errors="coerce")
        if parsed.isna().any():
            raise _BadRow
        return parsed.to_numpy(dtype="datetime64[ns]").view("int64")
    values = column.to_numpy(zero_copy_only=False)
    if not np.isfinite(values).all():
        raise _BadRow
    return values


def _lengths(column: pa.Array) -> np.ndarray:
    if column.null_count:
        raise _BadRow
    values = column.to_numpy(zero_copy_only=False)
    if not (np.isfinite(values).all() and (values >= 0).all() and (values % 1 == 0).all()):
        raise _BadRow
    return values.astype(np.int64)


def _add_batch(batch: pa.RecordBatch, layout: Layout, columns: _Columns) -> None:
    names = batch.schema.names
    columns.timestamps.append(_timestamps(batch.column(layout.timestamp), layout))
    columns.inputs.append(_lengths(batch.column(layout.input_tokens)))
    columns.outputs.append(_lengths(batch.column(layout.output_tokens)))
    if layout.session is not None and layout.session in names:
        columns.sessions.append(batch.column(layout.session))
    if layout.hash_ids is not None and layout.hash_ids in names:
        blocks = batch.column(layout.hash_ids)
        if blocks.values.null_count:
            raise _BadRow
        columns.hash_ids.append(blocks)


def _timestamp_type(layout: Layout) -> pa.DataType:
    return pa.string() if layout.unit == "datetime" else pa.float64()


def _jsonl_batches(
    path: Path, layout: Layout, session_type: pa.DataType
) -> Iterator[pa.RecordBatch]:
    fields = [
        (layout.timestamp, _timestamp_type(layout)),
        (layout.input_tokens, pa.float64()),
        (layout.output_tokens, pa.float64()),
    ]
    if layout.session is not None:
        fields.append((layout.session, session_type))
    if layout.hash_ids is not None:
        fields.append((layout.hash_ids, pa.list_(pa.int64())))
    reader = pjson.open_json(
        path,
        read_options=pjson.ReadOptions(block_size=_BLOCK_BYTES),
        parse_options=pjson.ParseOptions(
            explicit_schema=pa.schema(fields), unexpected_field_behavior="ignore"
        ),
    )
    yield from reader


def _csv_batches(path: Path, layout: Layout) -> Iterator[pa.RecordBatch]:
    header = csv_header(path)
    wanted = [name for name in layout.columns if name in header or name not in layout.optional]
    if any(name not in header for name in wanted):
        raise _BadRow
    types = {
        layout.timestamp: _timestamp_type(layout),
        layout.input_tokens: pa.float64(),
        layout.output_tokens: pa.float64(),
    }
    if layout.session is not None:
        types[layout.session] = pa.string()
    reader = pcsv.open_csv(
        path,
        read_options=pcsv.ReadOptions(block_size=_BLOCK_BYTES),
        convert_options=pcsv.ConvertOptions(include_columns=wanted, column_types=types),
    )
    yield from reader


def _read_columns(path: Path, layout: Layout) -> _Columns:
    session_types = [pa.string(), pa.int64()] if layout.kind == "jsonl" else [pa.string()]
    for attempt, session_type in enumerate(session_types):
        columns = _Columns()
        try:
            batches = (
                _jsonl_batches(path, layout, session_type)
                if layout.kind == "jsonl"
                else _csv_batches(path, layout)
            )
            for batch in batches:
                _add_batch(batch, layout, columns)
            return columns
        except (pa.ArrowInvalid, _BadRow) as exc:
            retry = f"/{layout.session}" in str(exc) and attempt + 1 < len(session_types)
            if not retry:  # integer session ids: read again with that type
                _raise_first_problem(path, layout, exc)
    raise AssertionError("unreachable")


def _raise_first_problem(path: Path, layout: Layout, exc: Exception) -> None:
    problem = first_problem(path, layout)
    if problem is None:
        detail = str(exc) or "a row breaks the rules"
        problem = f"{path}: cannot read as {layout.name} ({detail})"
    raise TraceError(problem) from exc


def _session_codes(chunks: list[pa.Array]) -> np.ndarray | None:
    if not chunks:
        return None
    values = pa.concat_arrays(chunks)
    if values.null_count == len(values):
        return None
    codes = pc.fill_null(values.dictionary_encode().indices, -1)
    return codes.to_numpy(zero_copy_only=False).astype(np.int64)


def _hash_lists(chunks: list[pa.Array]) -> pa.ListArray | None:
    if not chunks:
        return None
    lists = pa.concat_arrays(chunks)
    return None if lists.null_count == len(lists) else lists


def _offsets(raw: np.ndarray, layout: Layout) -> np.ndarray:
    if layout.unit == "datetime":
        return (raw - raw.min()).astype(np.float64) / 1e9
    return (raw - raw.min()) * _SECONDS[layout.unit]


def read_trace(path: Path, format: str = "auto", mapping: ColumnMapping | None = None) -> Trace:
    """Read `path` (see the module docstring); raises `TraceError` with `file:line: what`."""
    path = Path(path)
    if not path.is_file():
        raise TraceError(f"{path}: no such file")
    first_line(path)  # an empty file is one clear line, whatever its format
    layout = resolve_layout(path, format, mapping)
    columns = _read_columns(path, layout)
    if not columns.timestamps or sum(len(chunk) for chunk in columns.timestamps) == 0:
        raise TraceError(f"{path}: no requests in the trace")
    raw = np.concatenate(columns.timestamps)
    offsets = _offsets(raw, layout)
    del raw
    trace = Trace(
        source=str(path),
        format=layout.name,
        offset_s=offsets,
        input_tokens=np.concatenate(columns.inputs),
        output_tokens=np.concatenate(columns.outputs),
        row=np.arange(len(offsets), dtype=np.int64),
        session=_session_codes(columns.sessions),
        hash_ids=_hash_lists(columns.hash_ids),
        span_s=0.0,
    )
    return _sorted(trace)


def _sorted(trace: Trace) -> Trace:
    offsets = trace.offset_s
    behind = offsets[1:] < np.maximum.accumulate(offsets)[:-1]
    if not behind.any():
        return trace.with_offsets(offsets, float(offsets[-1]))
    order = np.argsort(offsets, kind="stable")
    moved = trace.take(order)
    return replace(moved, span_s=float(moved.offset_s[-1]), out_of_order=int(behind.sum()))


def read_trace_config(config: TraceConfig) -> Trace:
    """`read_trace` for a `workload.trace` config (controls are applied separately)."""
    return read_trace(config.file, config.format, config.mapping)
