"""Reading JSON-lines files that a process appends to and may be killed while writing.

One rule for every such file (requests, stages, scheduled journal, scrapes, generator CPU):
a last line without its newline that does not parse is *torn* (the writer died mid-line) and
is dropped quietly; any other line that does not parse is *corrupt* and is counted with its
line number, so damage in the middle of a file is reported instead of silently lost.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import ValidationError

__all__ = ["JsonLines", "JsonlFollower", "read_jsonl", "short_error"]

T = TypeVar("T")

_SHOWN_LINES = 10
_MESSAGE_CHARS = 160


def short_error(exc: Exception) -> str:
    """One line saying why a line was rejected: a pydantic error names its first field."""
    if isinstance(exc, ValidationError):
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        text = f"{where}: {first['msg']}" if where else str(first["msg"])
    elif isinstance(exc, UnicodeDecodeError):
        text = "not UTF-8 text"
    else:
        text = str(exc)
    text = " ".join(text.split())
    return text if len(text) <= _MESSAGE_CHARS else text[: _MESSAGE_CHARS - 1] + "…"


@dataclass
class JsonLines(Generic[T]):
    """What `read_jsonl` found: the rows it could read, and where the others were."""

    path: Path
    rows: list[T] = field(default_factory=list)
    numbers: list[int] = field(default_factory=list)  # the line number of each row (1-based)
    corrupt: list[int] = field(default_factory=list)  # line numbers of unreadable lines
    first_error: str | None = None  # why the first corrupt line was rejected
    torn: bool = False  # the last line was cut short by a killed writer (dropped)

    def note(self) -> str | None:
        """`requests.jsonl: 2 corrupt lines skipped (lines 12, 57: …)`, or None if clean."""
        if not self.corrupt:
            return None
        shown = ", ".join(str(n) for n in self.corrupt[:_SHOWN_LINES])
        more = f" and {len(self.corrupt) - _SHOWN_LINES} more" if len(self.corrupt) > 10 else ""
        count = len(self.corrupt)
        lines = "line" if count == 1 else "lines"
        return (
            f"{self.path.name}: {count} corrupt {lines} skipped ({lines} {shown}{more}; "
            f"first: {self.first_error})"
        )


def _loads(raw: bytes) -> Any:
    return json.loads(raw.decode("utf-8"))


def read_jsonl(path: Path, parse: Callable[[bytes], T] = _loads) -> JsonLines[T]:
    """Every readable line of `path` through `parse` (default: `json.loads`), in file order.

    `parse` takes the raw line (bytes, newline stripped) and raises ValueError (which covers
    JSON, UTF-8 and pydantic validation errors) for a line it cannot use. Blank lines are
    skipped. A missing file reads as empty.
    """
    out: JsonLines[T] = JsonLines(path)
    if not path.exists():
        return out
    with path.open("rb") as lines:
        for number, raw in enumerate(lines, start=1):
            complete = raw.endswith(b"\n")
            raw = raw.rstrip(b"\r\n")
            if not raw.strip():
                continue
            try:
                out.rows.append(parse(raw))
            except ValueError as exc:
                if not complete:  # only ever the last line
                    out.torn = True
                    continue
                out.corrupt.append(number)
                if out.first_error is None:
                    out.first_error = short_error(exc)
                continue
            out.numbers.append(number)
    return out


class JsonlFollower(Generic[T]):
    """The lines another process appends to `path`, read as they come (each call reads only
    what is new), by `read_jsonl`'s rule: a last line without its newline is not read until
    its newline comes; a complete line that does not parse is counted in `corrupt`.
    `from_end`: skip what the file holds now (another run's lines)."""

    def __init__(
        self, path: Path, parse: Callable[[bytes], T] = _loads, *, from_end: bool = False
    ) -> None:
        self.path = path
        self._parse = parse
        self._offset = path.stat().st_size if from_end and path.exists() else 0
        self._partial = b""
        self.corrupt = 0

    def read(self) -> list[T]:
        if not self.path.exists():
            return []
        with self.path.open("rb") as handle:
            handle.seek(self._offset)
            chunk = handle.read()
        self._offset += len(chunk)
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        rows = []
        for raw in lines:
            raw = raw.rstrip(b"\r")
            if not raw.strip():
                continue
            try:
                rows.append(self._parse(raw))
            except ValueError:
                self.corrupt += 1
        return rows
