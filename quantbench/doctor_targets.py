"""The bench.yaml side of `quantbench doctor`: does each `url:` target answer and generate, and
do the workload's prompt and output lengths fit each target's context?

The generation probe is quantbench/probe.py's own (the one `quantbench run` waits with); the
context comes from what the server says (`/v1/models` max_model_len on vLLM and our ExLlamaV2
server, `/info` on TGI) or, for a compose target, from the flags compose resolved.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol

import httpx

from loadtest.config import TimeoutConfig, WorkloadConfig
from loadtest.secrets import auth_headers
from loadtest.workload import length_bound
from quantbench.config import TargetConfig
from quantbench.errors import HarnessError
from quantbench.probe import TINY_PROBE, discover_model, wait_until_serving

__all__ = ["Context", "HttpProber", "Prober", "compose_context", "length_bound", "limits_finding"]


@dataclass(frozen=True)
class Context:
    """A server's limits in tokens: prompt + output, and prompt alone."""

    total: int
    max_input: int


class Prober(Protocol):
    """What the doctor asks a running server (tests pass a fake)."""

    def generating(self, target: TargetConfig, url: str, endpoint: str, timeout_s: float) -> str:
        """ "" when a tiny streamed request completes, else why not (one line)."""
        ...

    def context(self, url: str, api: str, api_key_env: str | None) -> Context | None: ...


class HttpProber:
    """The real probe: quantbench/probe.py's readiness request and the server's own limits."""

    def generating(self, target: TargetConfig, url: str, endpoint: str, timeout_s: float) -> str:
        if target.api_key_env and not os.environ.get(target.api_key_env):
            return f"environment variable {target.api_key_env} (api_key_env) is not set"
        try:
            # TGI's OpenAI routes take any other model name as a LoRA adapter (STACKS.md 2.3).
            default = "tgi" if target.resolved_stack == "tgi" else None
            model = target.model or default or discover_model(url, target.endpoint())
            workload = WorkloadConfig(endpoint=endpoint)  # type: ignore[arg-type]
            timeouts = TimeoutConfig(ready=timeout_s)
            wait_until_serving(url, target.endpoint(model), workload, timeouts, TINY_PROBE)
        except HarnessError as exc:
            return str(exc)
        return ""

    def context(self, url: str, api: str, api_key_env: str | None) -> Context | None:
        headers = auth_headers(api_key_env)
        try:
            info = httpx.get(f"{url}/info", headers=headers, timeout=10.0)
            if info.status_code == 200 and "max_total_tokens" in info.json():
                body = info.json()
                total = int(body["max_total_tokens"])
                return Context(total, int(body.get("max_input_tokens") or total - 1))
            models = httpx.get(f"{url}/v1/models", headers=headers, timeout=10.0)
            models.raise_for_status()
            total = int(models.json()["data"][0]["max_model_len"])
        except (httpx.HTTPError, KeyError, IndexError, TypeError, ValueError):
            return None
        return Context(total, total - 1)


def compose_context(stack: str | None, flags: dict[str, str]) -> Context | None:
    """The limits a compose service was started with, from its resolved flags."""
    names = {
        "vllm": "--max-model-len",
        "tgi": "--max-total-tokens",
        "exllamav2": "--max-seq-len",
    }
    flag = names.get(stack or "")
    if flag is None or not flags.get(flag, "").isdigit():
        return None
    total = int(flags[flag])
    max_input = flags.get("--max-input-tokens", "")
    return Context(total, int(max_input) if max_input.isdigit() else total - 1)


def limits_finding(workload: WorkloadConfig, context: Context) -> tuple[str, str, str]:
    """(status, finding, fix) for the workload's longest requests against one context."""
    output, output_exact = length_bound(workload.output_tokens)
    if workload.dataset is not None:
        if output > context.total - 1:
            return (
                "fail",
                f"outputs up to {output} tokens, context {context.total}",
                "lower workload.output_tokens (or its max)",
            )
        return (
            "ok",
            f"outputs up to {output} tokens in a {context.total}-token context; the "
            "dataset's prompt lengths are not checked here",
            "",
        )
    prompt, prompt_exact = length_bound(workload.prompt_tokens)
    exact = prompt_exact and output_exact
    about = "" if exact else "about "
    finding = (
        f"{about}{prompt} prompt + {output} output = {prompt + output} tokens; context "
        f"{context.total} (prompts up to {context.max_input})"
    )
    if prompt <= context.max_input and prompt + output <= context.total:
        return "ok", finding, ""
    fix = (
        "lower workload.prompt_tokens/output_tokens (or set their `max`), or raise "
        "MAX_MODEL_LEN (and MAX_INPUT_TOKENS = MAX_MODEL_LEN - 1) in .env"
    )
    if exact:
        return "fail", finding + ": requests would be refused or cut short", fix
    return "warn", finding + ": the longest 0.1% of requests would not fit", fix
