"""A server's error body as one short line, for error messages and failure breakdowns.

Servers answer errors as JSON (OpenAI and vLLM `{"error": {"message"}}`, TGI `{"error"}`),
as an HTML page (a proxy's 404 or 502), or as plain text; a user needs the message, on one
line, not the page.
"""

from __future__ import annotations

import html
import json
import re

__all__ = ["server_message"]

_MESSAGE_LIMIT = 200
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]+>")


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 1] + "…"


def _json_message(data: object) -> str | None:
    """OpenAI/vLLM `{"error": {"message"}}`, vLLM `{"message"}`, TGI `{"error": "..."}`."""
    if not isinstance(data, dict):
        return None
    for key in ("error", "message", "detail"):
        value = data.get(key)
        if isinstance(value, str) and value.strip():
            return value
        nested = _json_message(value)
        if nested:
            return nested
    return None


def server_message(text: str | None) -> str:
    """A server's error body as one short line: the message of a JSON error, the title (or
    the text) of an HTML page, else the text itself."""
    if not text:
        return ""
    stripped = text.strip()
    try:
        found = _json_message(json.loads(stripped.rstrip("…")))
    except ValueError:
        found = None
    if found:
        return _clip(found)
    if stripped.startswith("<") or "<html" in stripped[:200].lower():
        title = _TITLE.search(stripped)
        body = title.group(1) if title else _TAG.sub(" ", stripped)
        return _clip(html.unescape(body))
    return _clip(stripped)
