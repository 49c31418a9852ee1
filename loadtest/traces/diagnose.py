"""The slow, exact path: find the first bad row of a trace and name it `file:line: what`.

The fast readers parse columns with Arrow and only notice *that* something is wrong; this
module reads the file line by line (streaming, keeping nothing) to say *where* and *what*.
The rules here are the definition of a valid row; the fast path must agree with them.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from loadtest.traces.formats import Layout
from loadtest.traces.model import TraceError

__all__ = ["first_problem", "record_line"]

_UNIT_WORDS = {"s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds"}


def _jsonl_rows(path: Path) -> Iterator[tuple[int, str]]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield number, line


def _csv_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line, fields) of each non-empty row, the header included (line 1 if it is first)."""
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        start = 1
        for fields in reader:
            if fields and any(field.strip() for field in fields):
                yield start, fields
            start = reader.line_num + 1


def record_line(path: Path, kind: str, index: int) -> int:
    """The line on which data record `index` (0-based, blank lines and header skipped) starts."""
    rows: Iterator[tuple[int, Any]] = _jsonl_rows(path) if kind == "jsonl" else _csv_rows(path)
    skip = 0 if kind == "jsonl" else 1
    for position, (line, _) in enumerate(rows):
        if position - skip == index:
            return line
    return 0


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _timestamp_problem(name: str, value: object, layout: Layout, text: bool) -> str | None:
    if value is None:
        return f'no "{name}"'
    if layout.unit == "datetime":
        parsed = pd.to_datetime(
            pd.Series([str(value)]), format="ISO8601", utc=True, errors="coerce"
        )
        if not isinstance(value, str) or pd.isna(parsed.iloc[0]):
            return f'"{name}" is {value!r}, not a date and time (ISO 8601)'
        return None
    number = _number(value, text)
    if number is None or not math.isfinite(number):
        return f'"{name}" is {value!r}, not a number of {_UNIT_WORDS[layout.unit]}'
    return None


def _number(value: object, text: bool) -> float | None:
    """A number; from text only in CSV (JSON numbers in quotes are text, as Arrow reads them)."""
    if _is_number(value):
        return float(value)  # type: ignore[arg-type]
    if text and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _length_problem(name: str, value: object, text: bool) -> str | None:
    if value is None:
        return f'no "{name}"'
    number = _number(value, text)
    if number is None or not math.isfinite(number):
        return f'"{name}" is {value!r}, not a token count'
    if number < 0:
        return f'"{name}" is {value}; a token count cannot be negative'
    if not number.is_integer():
        return f'"{name}" is {value}; a token count is a whole number'
    return None


def _hash_ids_problem(name: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(
        isinstance(item, int) and not isinstance(item, bool) for item in value
    ):
        return f'"{name}" must be a list of integers (block ids)'
    return None


class _SessionKind:
    """Session ids are text or integers, the same kind on every row (Arrow needs one type)."""

    def __init__(self) -> None:
        self.kind: type | None = None

    def problem(self, name: str, value: object) -> str | None:
        if value is None:
            return None
        kind = str if isinstance(value, str) else int if isinstance(value, int) else None
        if kind is None or isinstance(value, bool):
            return f'"{name}" is {value!r}; a session id is text or an integer'
        if self.kind is not None and kind is not self.kind:
            return f'"{name}" is {value!r}, but earlier rows used {self.kind.__name__} ids'
        self.kind = kind
        return None


def _row_problem(row: dict[str, Any], layout: Layout, sessions: _SessionKind) -> str | None:
    text = layout.kind == "csv"
    problem = _timestamp_problem(layout.timestamp, row.get(layout.timestamp), layout, text)
    for name in (layout.input_tokens, layout.output_tokens):
        problem = problem or _length_problem(name, row.get(name), text)
    if layout.hash_ids is not None:
        problem = problem or _hash_ids_problem(layout.hash_ids, row.get(layout.hash_ids))
    if layout.session is not None:
        problem = problem or sessions.problem(layout.session, row.get(layout.session))
    return problem


def _jsonl_problem(path: Path, layout: Layout) -> str | None:
    sessions = _SessionKind()
    for number, line in _jsonl_rows(path):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            return f"{path}:{number}: not JSON ({exc.msg})"
        if not isinstance(row, dict):
            return f"{path}:{number}: not a JSON object"
        problem = _row_problem(row, layout, sessions)
        if problem:
            return f"{path}:{number}: {problem}"
    return None


def _csv_problem(path: Path, layout: Layout) -> str | None:
    rows = _csv_rows(path)
    header_line, header = next(rows, (1, []))
    missing = [name for name in layout.required if name not in header]
    missing += [
        name
        for name in layout.columns
        if name not in layout.optional and name not in layout.required and name not in header
    ]
    if missing:
        wanted = ", ".join(layout.required)
        return f'{path}:{header_line}: no column "{missing[0]}" ({layout.name} needs {wanted})'
    sessions = _SessionKind()
    for number, fields in rows:
        if len(fields) != len(header):
            return f"{path}:{number}: {len(fields)} fields where the header has {len(header)}"
        row = {
            name: (value if value != "" else None)
            for name, value in zip(header, fields, strict=True)
        }
        problem = _row_problem(row, layout, sessions)
        if problem:
            return f"{path}:{number}: {problem}"
    return None


def first_problem(path: Path, layout: Layout) -> str | None:
    """`file:line: what` for the first row that breaks the rules, or None if none does."""
    try:
        if layout.kind == "jsonl":
            return _jsonl_problem(path, layout)
        return _csv_problem(path, layout)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise TraceError(f"{path}: cannot read ({exc})") from exc
