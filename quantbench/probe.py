"""Readiness: a target is ready when it really generates, not when its port opens.

Also reads what the server says about itself (`/version` on vLLM, `/info` on TGI) and the
model it serves, for run.json.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from loadtest.clients import CLIENTS
from loadtest.clients.base import RequestContext
from loadtest.config import EndpointSpec, LengthDist, WorkloadConfig
from loadtest.records import Outcome
from loadtest.transport import HttpxTransport
from loadtest.workload import VOCABULARY, GenRequest
from quantbench.errors import HarnessError

__all__ = ["first_model", "server_info", "tokens_per_word", "wait_until_generating"]

_PROBE = GenRequest(prompt="Say hello.", prompt_tokens=3, max_tokens=4)
_RETRY_S = 0.5


def first_model(base_url: str, timeout_s: float = 10.0) -> str | None:
    try:
        response = httpx.get(f"{base_url}/v1/models", timeout=timeout_s)
        response.raise_for_status()
        return str(response.json()["data"][0]["id"])
    except (httpx.HTTPError, KeyError, IndexError, TypeError, ValueError):
        return None


def server_info(base_url: str) -> dict[str, Any]:
    """Whatever of `/version` and `/info` answers with JSON."""
    info: dict[str, Any] = {}
    for path in ("/version", "/info"):
        try:
            response = httpx.get(base_url + path, timeout=5.0)
            if response.status_code == 200:
                info[path.lstrip("/")] = response.json()
        except (httpx.HTTPError, ValueError):
            continue
    return info


def wait_until_generating(
    base_url: str, endpoint: EndpointSpec, endpoint_kind: str, timeout_s: float
) -> None:
    """Send a tiny streamed request until one succeeds; raise with the last outcome if none does."""
    workload = WorkloadConfig(
        endpoint=endpoint_kind,  # type: ignore[arg-type]
        prompt_tokens=LengthDist(mean=3),
        output_tokens=LengthDist(mean=4),
    )
    transport = HttpxTransport(base_url, timeout_s=min(timeout_s, 30.0))
    client = CLIENTS[endpoint.api](transport, endpoint, workload)
    deadline = time.monotonic() + timeout_s
    last = "no attempt"
    try:
        while time.monotonic() < deadline:
            ctx = RequestContext(endpoint.name, -1, "concurrency", 1, time.perf_counter_ns())
            record = client.execute(_PROBE, ctx)
            if record.outcome is Outcome.OK and record.output_tokens > 0:
                return
            last = f"{record.outcome}" + (f" ({record.error})" if record.error else "")
            if record.http_status is not None and 400 <= record.http_status < 500:
                break  # the request itself is refused (model name, key): retrying won't help
            time.sleep(_RETRY_S)
    finally:
        transport.close()
    raise HarnessError(
        f"target {endpoint.name}: {base_url} did not complete a probe generation within "
        f"{timeout_s:.0f} s; last attempt: {last}"
    )


def tokens_per_word(base_url: str, api: str) -> float | None:
    """Calibrate synthetic prompts: the target's own `/tokenize` count for a sample text
    (vLLM and TGI have one); None if it has none or answers oddly."""
    text = " ".join(VOCABULARY * 2)
    body: dict[str, Any] = {"inputs": text} if api == "tgi" else {"prompt": text}
    try:
        response = httpx.post(f"{base_url}/tokenize", json=body, timeout=10.0)
        if response.status_code != 200:
            return None
        data = response.json()
        count = len(data) if isinstance(data, list) else int(data["count"])
    except (httpx.HTTPError, KeyError, TypeError, ValueError):
        return None
    return count / len(text.split()) if count > 0 else None
