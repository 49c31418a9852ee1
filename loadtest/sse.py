"""Server-sent-event framing tolerant of every stack's variant (STACKS.md §6.6), on bytes.

vLLM writes `data: x\\n\\n`, TGI `data:x\\n\\n` with keep-alive comments, TabbyAPI `\\r\\n`.
The clients split whatever bytes one read returned into whole lines at once (`LineSplitter`)
and take the payload of each `data` line (`data_payload`); nothing is decoded to text on the
way, since the payload goes straight to a JSON decoder that reads bytes.
"""

from __future__ import annotations

__all__ = ["LineSplitter", "data_payload"]


class LineSplitter:
    """Cuts a byte stream into lines, keeping an unfinished last line for the next read."""

    __slots__ = ("_rest",)

    def __init__(self) -> None:
        self._rest = b""

    def feed(self, data: bytes) -> list[bytes]:
        """The complete lines `data` finishes, without their `\\n` (a `\\r` may remain)."""
        if self._rest:
            data = self._rest + data
        lines = data.split(b"\n")
        self._rest = lines.pop()
        return lines


def data_payload(line: bytes) -> bytes | None:
    """The value of a `data` field line (one optional space after the colon removed, a `\\r`
    terminator too); None for any other line: comments, `event:`/`id:`/`retry:`, blanks."""
    if line[:5] != b"data:":
        return b"" if line.rstrip(b"\r") == b"data" else None  # a field name alone: empty
    value = line[5:]
    if value[-1:] == b"\r":
        value = value[:-1]
    return value[1:] if value[:1] == b" " else value
