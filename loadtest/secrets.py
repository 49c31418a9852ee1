"""A target's API key: read from the environment when a request needs it, never stored.

`auth_headers` gives the header every request to a target carries (generation, probes,
model discovery). `Redactor` removes the key, and any `Bearer …` value, from text that will
be stored or printed: a server may echo the Authorization header in its error bodies, and
those bodies become records, Locust failure rows and error lines.
"""

from __future__ import annotations

import os
import re

__all__ = ["REDACTED", "Redactor", "api_key", "auth_headers"]

REDACTED = "[redacted]"
_BEARER = re.compile(r"(?i)\b(bearer)(\s+|%20)[^\s\"'<>,;&]{8,}")
_MIN_KEY_CHARS = 4  # shorter "keys" would redact ordinary words


def api_key(api_key_env: str | None) -> str | None:
    """The key in `$api_key_env`, or None when unset or empty."""
    if not api_key_env:
        return None
    return os.environ.get(api_key_env) or None


def auth_headers(api_key_env: str | None) -> dict[str, str]:
    key = api_key(api_key_env)
    return {"Authorization": f"Bearer {key}"} if key else {}


class Redactor:
    """Replaces the configured keys and every `Bearer <token>` in a text with `[redacted]`."""

    def __init__(self, *api_key_envs: str | None) -> None:
        keys = {api_key(env) for env in api_key_envs}
        self._keys = sorted((k for k in keys if k and len(k) >= _MIN_KEY_CHARS), key=len)[::-1]

    def __call__(self, text: str) -> str:
        for key in self._keys:
            text = text.replace(key, REDACTED)
        return _BEARER.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)

    def optional(self, text: str | None) -> str | None:
        return None if text is None else self(text)
