"""Reading a run directory (run.json, request records, stage windows, the plan) and writing
the files derived from it; the files the run wrote are never rewritten.

Request records are parsed by Arrow with a schema derived from `RequestRecord` (no inference,
multi-threaded), ITL lists stay Arrow lists (never a million Python lists), and a current
`requests.parquet` is read instead of the JSON lines when a run is analysed again. JSON lines
follow `loadtest.jsonl`'s rule: a torn last line is dropped, any other bad line is reported.
"""

from __future__ import annotations

import enum
import io
import json
import types
import typing
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from loadtest.generator_stats import GENERATOR_FILE
from loadtest.jsonl import read_jsonl
from loadtest.records import REQUESTS_FILE, STAGES_FILE, RequestRecord, StageRecord
from loadtest.run_meta import RUN_FILE, RunMeta, RunMetaError

__all__ = [
    "GENERATOR_COLUMNS",
    "PARQUET_FILE",
    "PLAN_JSON",
    "PLAN_MD",
    "RUN_FILE",
    "RunDirError",
    "load_generator",
    "load_plan",
    "load_requests",
    "load_run_meta",
    "load_stages",
    "parquet_is_current",
    "read_requests",
    "record_schema",
    "write_parquet",
    "write_text_atomic",
]

PARQUET_FILE = "requests.parquet"
PLAN_JSON = "plan.json"
PLAN_MD = "plan.md"

_COLUMNS = list(RequestRecord.model_fields)
_BLOCK_BYTES = 8 << 20
_SOURCE_BYTES = b"quantbench.requests_jsonl_bytes"


class RunDirError(Exception):
    """The run directory is missing a file or holds one that cannot be read."""


def _arrow_type(annotation: Any) -> pa.DataType:
    """The Arrow type of one record field: Optional[X] is X, lists of floats stay lists."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        (inner,) = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return _arrow_type(inner)
    if origin is list:
        return pa.list_(_arrow_type(typing.get_args(annotation)[0]))
    if annotation is bool:
        return pa.bool_()
    if annotation is int:
        return pa.int64()
    if annotation is float:
        return pa.float64()
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return pa.string()
    return pa.string()  # str and Literal[...] of strings


def record_schema() -> pa.Schema:
    """The Arrow schema of requests.jsonl, field for field from `RequestRecord`."""
    return pa.schema(
        [
            (name, _arrow_type(field.annotation))
            for name, field in RequestRecord.model_fields.items()
        ]
    )


def load_run_meta(run_dir: Path) -> RunMeta:
    """run.json through its schema (`loadtest.run_meta`); any problem is a RunDirError."""
    try:
        return RunMeta.read(run_dir)
    except RunMetaError as exc:
        raise RunDirError(str(exc)) from exc


def parquet_is_current(run_dir: Path) -> bool:
    """True when requests.parquet holds exactly the records now in requests.jsonl.

    The parquet file records the size of the JSON lines it was made from; records are only
    ever appended, so an equal size means the same records (copies and clocks do not matter).
    A file with pandas metadata (written by an older quantbench, unreadable by pandas 3) is
    not current, so the next report replaces it.
    """
    parquet, jsonl = run_dir / PARQUET_FILE, run_dir / REQUESTS_FILE
    if not parquet.exists() or not jsonl.exists():
        return False
    try:
        metadata = pq.read_schema(parquet).metadata or {}
    except (OSError, pa.ArrowInvalid):
        return False
    if b"pandas" in metadata:
        return False
    return metadata.get(_SOURCE_BYTES) == str(jsonl.stat().st_size).encode()


def _to_frame(table: pa.Table) -> pd.DataFrame:
    """Strings become categoricals, ITL lists stay Arrow-backed (`pd.ArrowDtype`)."""
    schema = record_schema()
    for name in _COLUMNS:
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(len(table), schema.field(name).type))
    table = table.select(_COLUMNS)
    for index, field in enumerate(table.schema):
        if pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
            table = table.set_column(index, field.name, table.column(index).dictionary_encode())
    return table.to_pandas(
        types_mapper=lambda t: pd.ArrowDtype(t) if pa.types.is_list(t) else None,
        self_destruct=True,
    )


def read_requests(
    run_dir: Path, columns: list[str] | None = None
) -> tuple[pd.DataFrame, list[str]]:
    """All request records as a frame (one row each), and what could not be read.

    The second item has a line when the file is damaged: corrupt lines (not the torn last
    line of a killed writer) are counted with their line numbers and left out, never silently.
    `columns` reads only those fields (the others are null): faster where a caller needs few.
    """
    path = run_dir / REQUESTS_FILE
    if parquet_is_current(run_dir):
        return _to_frame(pq.read_table(run_dir / PARQUET_FILE, columns=columns)), []
    if not path.exists() or path.stat().st_size == 0:
        return _to_frame(record_schema().empty_table()), []
    schema = record_schema()
    if columns is not None:
        schema = pa.schema([field for field in schema if field.name in columns])
    parse = pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    read = pa_json.ReadOptions(block_size=_BLOCK_BYTES)
    try:
        return _to_frame(pa_json.read_json(path, read_options=read, parse_options=parse)), []
    except pa.ArrowInvalid:
        pass  # a torn last line, or damage: find the bad lines, keep every good record
    lines = read_jsonl(path, _valid_record_line)
    note = lines.note()
    if not lines.rows:
        raise RunDirError(f"{path}: no readable records ({note or 'its only line is torn'})")
    good = io.BytesIO(b"\n".join(lines.rows) + b"\n")
    table = pa_json.read_json(good, read_options=read, parse_options=parse)
    return _to_frame(table), [note] if note else []


def _valid_record_line(raw: bytes) -> bytes:
    RequestRecord.model_validate_json(raw)  # raises ValueError for anything Arrow would reject
    return raw


def load_requests(run_dir: Path) -> pd.DataFrame:
    """All request records as a frame (one row each); an empty frame if none were written."""
    return read_requests(run_dir)[0]


def _generator_line(raw: bytes) -> dict[str, Any]:
    row = json.loads(raw)
    if not isinstance(row, dict) or not {"pid", "wall_s", "cpu_percent"} <= row.keys():
        raise ValueError("not a generator CPU sample")
    return row


GENERATOR_COLUMNS = ["pid", "wall_s", "cpu_percent", "loop_ticks", "loop_late_ms", "loop_busy"]


def load_generator(run_dir: Path) -> pd.DataFrame:
    """The load generator's own samples (`pid, wall_s, cpu_percent`, and its event loop's
    `loop_ticks`, `loop_late_ms` and `loop_busy` where recorded), if any."""
    rows = read_jsonl(run_dir / GENERATOR_FILE, _generator_line).rows
    return pd.DataFrame(rows, columns=GENERATOR_COLUMNS)


def load_stages(run_dir: Path) -> list[StageRecord]:
    """The stage records; a damaged line (other than a torn last one) is one clear error."""
    path = run_dir / STAGES_FILE
    lines = read_jsonl(path, StageRecord.model_validate_json)
    if lines.corrupt:
        raise RunDirError(
            f"{path}:{lines.corrupt[0]}: not a stage record ({lines.first_error}); "
            "restore that line, or rerun the stages"
        )
    return lines.rows


def load_plan(run_dir: Path) -> dict[str, Any] | None:
    """plan.json as written by `quantbench plan`, or None when the run has none."""
    path = run_dir / PLAN_JSON
    if not path.exists():
        return None
    try:
        plan = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunDirError(
            f"{path}: not valid JSON ({exc}); delete it or rerun quantbench plan"
        ) from exc
    if not isinstance(plan, dict):
        raise RunDirError(f"{path}: expected a JSON object; delete it or rerun quantbench plan")
    return plan


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def write_parquet(run_dir: Path, requests: pd.DataFrame) -> Path:
    """requests.parquet: the same rows as requests.jsonl, written atomically, stamped with
    the size of the JSON lines it holds (see `parquet_is_current`).

    Columns have exactly `record_schema()`'s plain Arrow types and the file carries no pandas
    metadata, so `pandas.read_parquet(path)`, pyarrow and DuckDB open it with their
    defaults (pandas 3 cannot read back the `ArrowDtype` list metadata it writes itself).
    """
    path = run_dir / PARQUET_FILE
    tmp = path.with_name(path.name + ".tmp")
    table = pa.Table.from_pandas(requests, preserve_index=False).cast(record_schema())
    jsonl = run_dir / REQUESTS_FILE
    stamp = {_SOURCE_BYTES: str(jsonl.stat().st_size).encode()} if jsonl.exists() else {}
    pq.write_table(table.replace_schema_metadata(stamp), tmp)
    tmp.replace(path)
    return path
