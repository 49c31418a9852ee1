"""Server-sent-event line parsing tolerant of every stack's framing (STACKS.md §6.6).

vLLM writes `data: x\\n\\n`, TGI `data:x\\n\\n` with keep-alive comments, TabbyAPI `\\r\\n`.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["SseLine", "parse_sse_line"]


class SseLine(NamedTuple):
    """One parsed line: `field` is "data", "event", "id", "retry", "comment" or "blank"."""

    field: str
    value: str


def parse_sse_line(raw: bytes) -> SseLine:
    """Parse one line of an event stream (with or without its line terminator)."""
    line = raw.rstrip(b"\r\n").decode("utf-8", errors="replace")
    if not line:
        return SseLine("blank", "")
    if line.startswith(":"):
        return SseLine("comment", line[1:])
    name, sep, value = line.partition(":")
    if not sep:
        return SseLine(name, "")
    if value.startswith(" "):
        value = value[1:]
    return SseLine(name, value)
