"""Which model a target serves, when the config does not say: the first of `/v1/models`.

The one discovery both `quantbench run` and the locustfile (run by hand) use; it carries the
target's key like every other request.
"""

from __future__ import annotations

import httpx

from loadtest.secrets import Redactor, auth_headers
from loadtest.server_text import server_message

__all__ = ["DiscoveryError", "served_model"]


class DiscoveryError(Exception):
    """`/v1/models` did not name a model (the message says why, on one line)."""


def served_model(base_url: str, api_key_env: str | None = None, timeout_s: float = 10.0) -> str:
    url = f"{base_url.rstrip('/')}/v1/models"
    redact = Redactor(api_key_env)
    try:
        response = httpx.get(url, headers=auth_headers(api_key_env), timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise DiscoveryError(f"GET {url}: {redact(str(exc) or type(exc).__name__)}") from exc
    if response.status_code != 200:
        message = redact(server_message(response.text))
        raise DiscoveryError(f"GET {url}: HTTP {response.status_code}: {message}")
    try:
        return str(response.json()["data"][0]["id"])
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise DiscoveryError(f"GET {url}: no model listed in its answer") from exc
