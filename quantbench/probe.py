"""Readiness: a target is ready when it serves the workload, not when its port opens.

The probe is the workload's longest request (its real prompt and output lengths), so a
workload the target refuses (a prompt over its context length, a missing key) fails here,
before the sweep, with the server's own message on one line. Also reads what the server
says about itself (`/version` on vLLM, `/info` on TGI) and the model it serves, for
run.json. Every request carries the target's key.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from loadtest.clients import CLIENTS
from loadtest.clients.base import RequestContext
from loadtest.config import EndpointSpec, TimeoutConfig, WorkloadConfig
from loadtest.discovery import DiscoveryError, served_model
from loadtest.records import Outcome, RequestRecord
from loadtest.secrets import Redactor, auth_headers
from loadtest.server_text import server_message
from loadtest.transport import HttpxTransport
from loadtest.workload import VOCABULARY, GenRequest
from quantbench.errors import HarnessError

__all__ = [
    "TINY_PROBE",
    "discover_model",
    "probe_label",
    "server_info",
    "tokens_per_word",
    "wait_until_serving",
]

_RETRY_S = 0.5
TINY_PROBE = GenRequest(prompt="Say hello.", prompt_tokens=3, max_tokens=4)


def discover_model(base_url: str, endpoint: EndpointSpec) -> str:
    """The model `base_url` serves (first of /v1/models); a HarnessError saying how to fix it."""
    try:
        return served_model(base_url, endpoint.api_key_env)
    except DiscoveryError as exc:
        raise HarnessError(
            f"target {endpoint.name}: no `model:` in the config and {exc} "
            "(set the target's `model:`, or check its url and api_key_env)"
        ) from exc


def server_info(base_url: str, api_key_env: str | None = None) -> dict[str, Any]:
    """Whatever of `/version` and `/info` answers with JSON."""
    info: dict[str, Any] = {}
    for path in ("/version", "/info"):
        try:
            response = httpx.get(base_url + path, headers=auth_headers(api_key_env), timeout=5.0)
            if response.status_code == 200:
                info[path.lstrip("/")] = response.json()
        except (httpx.HTTPError, ValueError):
            continue
    return info


def _describe(record: RequestRecord, redact: Redactor) -> str:
    status = f"{record.http_status} " if record.http_status and record.http_status != 200 else ""
    message = redact(server_message(record.error))
    return f"{status}{record.outcome}" + (f": {message}" if message else "")


def wait_until_serving(
    base_url: str,
    endpoint: EndpointSpec,
    workload: WorkloadConfig,
    timeouts: TimeoutConfig,
    probe: GenRequest,
) -> RequestRecord:
    """Send `probe` until it succeeds, and return its record (its timings tell how long a
    request takes); an HTTP 4xx answer (the request itself is refused: its length, the model
    name, the key) fails at once, anything else (not up yet, loading, an injected fault) is
    retried until `timeouts.ready`."""
    transport = HttpxTransport(base_url, timeout_s=min(timeouts.total, timeouts.ready))
    client = CLIENTS[endpoint.api](transport, endpoint, workload, timeouts)
    redact = Redactor(endpoint.api_key_env)
    deadline = time.monotonic() + timeouts.ready
    last = "no attempt"
    try:
        while time.monotonic() < deadline:
            ctx = RequestContext(endpoint.name, -1, "concurrency", 1, time.perf_counter_ns())
            record = client.execute(probe, ctx)
            if record.outcome is Outcome.OK and record.output_tokens > 0:
                return record
            last = _describe(record, redact)
            if record.http_status is not None and _refused(record.http_status):
                raise HarnessError(f"target {endpoint.name}: refuses {probe_label(probe)}: {last}")
            time.sleep(_RETRY_S)
    finally:
        transport.close()
    raise HarnessError(
        f"target {endpoint.name}: {base_url} did not complete {probe_label(probe)} within "
        f"{timeouts.ready:.0f} s; last attempt: {last}"
    )


def _refused(status: int) -> bool:
    """A 4xx answer other than "try again later" (408 timeout, 429 too many requests)."""
    return 400 <= status < 500 and status not in (408, 429)


def probe_label(probe: GenRequest) -> str:
    if probe is TINY_PROBE:
        return "a probe generation"
    return (
        f"the workload's longest request ({probe.prompt_tokens} prompt + "
        f"{probe.max_tokens} output tokens)"
    )


def tokens_per_word(base_url: str, api: str, api_key_env: str | None = None) -> float | None:
    """Calibrate synthetic prompts: the target's own `/tokenize` count for a sample text
    (vLLM and TGI have one); None if it has none or answers oddly."""
    text = " ".join(VOCABULARY * 2)
    body: dict[str, Any] = {"inputs": text} if api == "tgi" else {"prompt": text}
    try:
        response = httpx.post(
            f"{base_url}/tokenize", json=body, headers=auth_headers(api_key_env), timeout=10.0
        )
        if response.status_code != 200:
            return None
        data = response.json()
        count = len(data) if isinstance(data, list) else int(data["count"])
    except (httpx.HTTPError, KeyError, TypeError, ValueError):
        return None
    return count / len(text.split()) if count > 0 else None
