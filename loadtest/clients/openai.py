"""OpenAI completions and chat streaming client (vLLM, the ExLlamaV2 server, any OpenAI API).

It knows nothing of Locust: it writes a request through a `Transport`, reads the event stream
line by line with an injectable clock, and returns one `RequestRecord` whose outcome says how
the request ended. Framing quirks handled: `data:` with or without a space, `\\r\\n`,
comment lines, the role-only first chat delta, usage in a `choices: []` chunk or on any chunk,
in-stream error events, and a stream that ends without `[DONE]`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from loadtest.config import EndpointSpec, WorkloadConfig
from loadtest.records import Outcome, RequestRecord
from loadtest.sse import parse_sse_line
from loadtest.timing import derive
from loadtest.transport import Transport, TransportError
from loadtest.workload import GenRequest

__all__ = ["OpenAIClient", "RequestContext"]

_PATHS = {"completions": "/v1/completions", "chat": "/v1/chat/completions"}
_PINNING_STACKS = ("vllm", "exllamav2")
_ERROR_TEXT_LIMIT = 300


@dataclass(frozen=True)
class RequestContext:
    """Where a request sits in the run: its target, stage and schedule."""

    target: str
    stage: int
    mode: str
    load: float
    scheduled_ns: int
    warmup: bool = False
    user: int = 0
    seq: int = 0


@dataclass
class _Stream:
    first_token_ns: int | None = None
    last_token_ns: int | None = None
    event_ns: list[int] = field(default_factory=list)
    event_tokens: list[int] = field(default_factory=list)
    usage_tokens: int | None = None
    prompt_tokens: int | None = None


class OpenAIClient:
    """Streams one request per call to `execute` and accounts for it with one outcome."""

    def __init__(
        self,
        transport: Transport,
        endpoint: EndpointSpec,
        workload: WorkloadConfig,
        *,
        clock_ns: Callable[[], int] = time.perf_counter_ns,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._transport = transport
        self._endpoint = endpoint
        self._kind = workload.endpoint
        self._clock = clock_ns
        self._wall = wall_clock
        self._headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if endpoint.api_key_env:
            key = os.environ.get(endpoint.api_key_env, "")
            if key:
                self._headers["Authorization"] = f"Bearer {key}"

    @property
    def path(self) -> str:
        return _PATHS[self._kind]

    def body(self, request: GenRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self._endpoint.model,
            "max_tokens": request.max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
            "temperature": 0.0,
        }
        if self._kind == "chat":
            body["messages"] = [{"role": "user", "content": request.prompt}]
        else:
            body["prompt"] = request.prompt
        if self._endpoint.stack in _PINNING_STACKS:
            # Pin the output length so every target generates the same number of tokens.
            body["ignore_eos"] = True
            body["min_tokens"] = request.max_tokens
        return body

    def execute(self, request: GenRequest, ctx: RequestContext) -> RequestRecord:
        record = RequestRecord(
            target=ctx.target,
            stage=ctx.stage,
            mode="rate" if ctx.mode == "rate" else "concurrency",
            load=ctx.load,
            warmup=ctx.warmup,
            user=ctx.user,
            seq=ctx.seq,
            outcome=Outcome.OK,
            scheduled_ns=ctx.scheduled_ns,
        )
        stream = _Stream()
        payload = json.dumps(self.body(request)).encode()
        record.wall_sent_s = self._wall()
        record.sent_ns = self._clock()
        try:
            response = self._transport.post(self.path, payload, self._headers)
        except TransportError as exc:
            record.outcome = {
                "connect": Outcome.CONNECT_ERROR,
                "timeout_connect": Outcome.TIMEOUT_CONNECT,
                "timeout": Outcome.TIMEOUT_TTFT,
            }[exc.kind]
            record.error = _clip(str(exc))
            return derive(record, [], [])
        record.first_byte_ns = self._clock()
        record.http_status = response.status
        try:
            if response.status != 200:
                record.outcome = Outcome.HTTP_ERROR
                record.error = _clip(response.read().decode("utf-8", errors="replace"))
            else:
                self._consume(response.readline, record, stream)
        except TransportError as exc:
            record.outcome = (
                Outcome.TIMEOUT_TTFT
                if exc.kind == "timeout" and stream.first_token_ns is None
                else Outcome.TIMEOUT_TOTAL
                if exc.kind == "timeout"
                else Outcome.TRUNCATED_STREAM
            )
            record.error = _clip(str(exc))
        finally:
            response.close()
        record.first_token_ns = stream.first_token_ns
        record.last_token_ns = stream.last_token_ns
        record.events = len(stream.event_ns)
        record.prompt_tokens = stream.prompt_tokens
        if stream.usage_tokens is not None:
            record.output_tokens = stream.usage_tokens
            record.token_count_source = "usage"
        else:
            record.output_tokens = sum(stream.event_tokens)
        return derive(record, stream.event_ns, stream.event_tokens)

    def _consume(
        self, readline: Callable[[], bytes], record: RequestRecord, stream: _Stream
    ) -> None:
        while True:
            raw = readline()
            if not raw:
                record.outcome = Outcome.TRUNCATED_STREAM
                record.error = "stream closed before data: [DONE]"
                return
            line = parse_sse_line(raw)
            if line.field != "data":
                continue
            now = self._clock()
            if line.value.strip() == "[DONE]":
                record.end_ns = now
                return
            try:
                event = json.loads(line.value)
            except json.JSONDecodeError:
                record.outcome = Outcome.MALFORMED_EVENT
                record.error = _clip(f"not JSON: {line.value}")
                return
            if not isinstance(event, dict):
                record.outcome = Outcome.MALFORMED_EVENT
                record.error = _clip(f"not an object: {line.value}")
                return
            if "error" in event:
                record.outcome = Outcome.SERVER_ERROR_EVENT
                record.error = _clip(json.dumps(event["error"]))
                return
            self._take_event(event, now, stream)

    @staticmethod
    def _take_event(event: dict[str, Any], now: int, stream: _Stream) -> None:
        usage = event.get("usage")
        if isinstance(usage, dict):
            if isinstance(usage.get("completion_tokens"), int):
                stream.usage_tokens = usage["completion_tokens"]
            if isinstance(usage.get("prompt_tokens"), int):
                stream.prompt_tokens = usage["prompt_tokens"]
        text = ""
        for choice in event.get("choices") or ():
            delta = choice.get("delta")
            piece = delta.get("content") if isinstance(delta, dict) else choice.get("text")
            if isinstance(piece, str):
                text += piece
        if not text:
            return  # role-only first delta, usage chunk, or an empty keep-alive
        if stream.first_token_ns is None:
            stream.first_token_ns = now
        stream.last_token_ns = now
        stream.event_ns.append(now)
        stream.event_tokens.append(1)


def _clip(text: str) -> str:
    return text if len(text) <= _ERROR_TEXT_LIMIT else text[:_ERROR_TEXT_LIMIT] + "…"
