"""The streaming request loop every protocol client shares: timeouts, timestamps, outcomes.

A client subclass says where and what to send (`path`, `body`), which fields of an event it
reads (`event_type`, a msgspec struct: the decoder skips every other field without building
it) and what one decoded event means (`interpret`); this loop writes the request, reads
whatever bytes have arrived with deadlines, stamps them once (the kernel's receive time when
the transport has it, else the moment the read returned), cuts them into events and ends
every request with one outcome. Per token event that is one read at most, one split, one
decode of the few fields needed and one small tuple.
"""

from __future__ import annotations

import json
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, NamedTuple, TypeVar, cast

import msgspec

from loadtest.config import EndpointSpec, TimeoutConfig, WorkloadConfig
from loadtest.records import Outcome, RequestRecord
from loadtest.sse import LineSplitter, data_payload
from loadtest.timing import derive
from loadtest.transport import StreamingResponse, Transport, TransportError
from loadtest.workload import GenRequest

__all__ = ["EventMeaning", "RequestContext", "StreamingClient"]

_ERROR_TEXT_LIMIT = 300
_NS = 1_000_000_000
_EVENT_STREAM = "text/event-stream"
E = TypeVar("E", bound=msgspec.Struct)


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
    request_id: str = ""
    trace_row: int | None = None
    session: int | None = None
    turn: int | None = None

    def record(self, outcome: Outcome, **fields: Any) -> RequestRecord:
        """A record of this request with its place in the run filled in."""
        return RequestRecord(
            target=self.target,
            stage=self.stage,
            mode=self.mode,  # type: ignore[arg-type]
            load=self.load,
            warmup=self.warmup,
            user=self.user,
            seq=self.seq,
            request_id=self.request_id,
            trace_row=self.trace_row,
            session=self.session,
            turn=self.turn,
            outcome=outcome,
            scheduled_ns=self.scheduled_ns,
            **fields,
        )


class EventMeaning(NamedTuple):
    """What one decoded event carries. `tokens`: generated tokens in it (0: none, e.g. the
    role-only chat delta); `done`: it ends the stream; counts are the server's own;
    `finish_reason`: why the server says generation ended, on the event that says it."""

    tokens: int = 0
    done: bool = False
    output_tokens: int | None = None
    cumulative_tokens: int | None = None
    prompt_tokens: int | None = None
    error: str | None = None
    finish_reason: str | None = None


@dataclass
class _Stream:
    first_token_ns: int | None = None
    last_token_ns: int | None = None
    event_ns: list[int] = field(default_factory=list)
    event_tokens: list[int] = field(default_factory=list)
    cumulative: int = 0
    usage_tokens: int | None = None
    prompt_tokens: int | None = None
    ended_early: str | None = None  # a finish reason that means the server cut generation
    read_lag_ns: int | None = None  # the longest wait of kernel-stamped bytes for their read


class StreamingClient(ABC, Generic[E]):
    """Sends one request per `execute` call and accounts for it with exactly one outcome."""

    #: the fields of an event this client reads; a JSON object is decoded into it
    event_type: ClassVar[type[msgspec.Struct]]
    #: the `data:` payload that ends a stream, if the API has one (OpenAI: `[DONE]`)
    done_marker: bytes | None = None
    #: finish reasons by which the server says it ended the generation early: the stream
    #: completes normally, but the request is `aborted`, not `ok`
    early_finish_reasons: frozenset[str] = frozenset()

    def __init__(
        self,
        transport: Transport,
        endpoint: EndpointSpec,
        workload: WorkloadConfig,
        timeouts: TimeoutConfig | None = None,
        *,
        clock_ns: Callable[[], int] = time.perf_counter_ns,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._transport = transport
        self._endpoint = endpoint
        self._workload = workload
        self._timeouts = timeouts or TimeoutConfig()
        self._clock = clock_ns
        self._wall = wall_clock
        decoder = msgspec.json.Decoder(self.event_type)
        self._decode = cast(Callable[[bytes], E], decoder.decode)
        self._headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if endpoint.api_key_env:
            key = os.environ.get(endpoint.api_key_env, "")
            if key:
                self._headers["Authorization"] = f"Bearer {key}"

    @property
    @abstractmethod
    def path(self) -> str: ...

    @abstractmethod
    def body(self, request: GenRequest) -> dict[str, Any]: ...

    @abstractmethod
    def interpret(self, event: E) -> EventMeaning:
        """What one event means; `event` is an instance of `event_type`."""

    def pinned_tokens(self, request: GenRequest) -> int | None:
        """The output length this client asked the server to generate exactly, if any."""
        return None

    def execute(self, request: GenRequest, ctx: RequestContext) -> RequestRecord:
        record = ctx.record(Outcome.OK, prompt_tokens=request.prompt_tokens)
        stream = _Stream()
        payload = json.dumps(self.body(request)).encode()
        headers = self._headers
        if ctx.request_id:  # lets a server's log be matched to this record (vLLM honours it)
            headers = {**headers, "X-Request-Id": ctx.request_id}
        record.wall_sent_s = self._wall()
        sent = record.sent_ns = self._clock()
        ttft_deadline = sent + int(min(self._timeouts.ttft, self._timeouts.total) * _NS)
        total_deadline = sent + int(self._timeouts.total * _NS)
        try:
            response = self._transport.post(
                self.path, payload, headers, timeout_s=(ttft_deadline - sent) / _NS
            )
        except TransportError as exc:
            record.outcome = {
                "connect": Outcome.CONNECT_ERROR,
                "timeout_connect": Outcome.TIMEOUT_CONNECT,
                "timeout": Outcome.TIMEOUT_TTFT,
            }[exc.kind]
            record.error = _clip(str(exc))
            return derive(record, [], [])
        record.first_byte_ns = self._clock()
        if response.headers_age_ns is not None:  # the kernel's receive time of the headers
            record.first_byte_ns = max(record.first_byte_ns - response.headers_age_ns, sent)
        response.yield_to_others()
        record.http_status = response.status
        try:
            if response.status != 200:
                record.outcome = Outcome.HTTP_ERROR
                record.error = _clip(response.read().decode("utf-8", errors="replace"))
            elif not _is_event_stream(response.content_type):
                record.outcome = Outcome.MALFORMED_EVENT
                record.error = f"not an event stream (content-type {response.content_type})"
            else:
                self._consume(response, record, stream, ttft_deadline, total_deadline)
                self._check_complete(record, stream, self.pinned_tokens(request))
        except TransportError as exc:
            if exc.kind == "timeout":
                record.outcome = _timeout(stream)
            else:
                record.outcome = Outcome.TRUNCATED_STREAM
            record.error = _clip(str(exc))
        finally:
            response.close()
        return self._finish(record, stream)

    @staticmethod
    def _check_complete(record: RequestRecord, stream: _Stream, pinned: int | None) -> None:
        """A stream that ended properly can still be a generation the server cut short."""
        if record.outcome is not Outcome.OK:
            return
        if stream.ended_early is not None:
            record.outcome = Outcome.ABORTED
            record.error = (
                f"the server ended the generation early (finish_reason {stream.ended_early!r})"
            )
            return
        got = stream.usage_tokens if stream.usage_tokens is not None else sum(stream.event_tokens)
        if pinned is not None and got < pinned:
            record.outcome = Outcome.ABORTED
            record.error = f"the server generated {got} of the {pinned} pinned output tokens"

    def _finish(self, record: RequestRecord, stream: _Stream) -> RequestRecord:
        record.first_token_ns = stream.first_token_ns
        record.last_token_ns = stream.last_token_ns
        record.events = len(stream.event_ns)
        if stream.read_lag_ns is not None:
            record.read_lag_ms = stream.read_lag_ns / 1e6
        if stream.prompt_tokens is not None:
            record.prompt_tokens = stream.prompt_tokens
        if stream.usage_tokens is not None:
            record.output_tokens = stream.usage_tokens
            record.token_count_source = "usage"
        else:
            record.output_tokens = sum(stream.event_tokens)
        return derive(record, stream.event_ns, stream.event_tokens)

    def _consume(
        self,
        response: StreamingResponse,
        record: RequestRecord,
        stream: _Stream,
        ttft_deadline: int,
        total_deadline: int,
    ) -> None:
        clock = self._clock
        lines = LineSplitter()
        while True:
            deadline = total_deadline if stream.first_token_ns else ttft_deadline
            data, age_ns = response.read_chunk(timeout_s=max(deadline - clock(), 0) / _NS)
            now = clock()
            if age_ns is not None:  # the kernel's receive time, never before the request
                now = max(now - age_ns, record.sent_ns or 0)
                if stream.read_lag_ns is None or age_ns > stream.read_lag_ns:
                    stream.read_lag_ns = age_ns
            response.yield_to_others()
            if not data:
                record.outcome = Outcome.TRUNCATED_STREAM
                record.error = "stream closed before its end marker"
                return
            if now > deadline:
                record.outcome = _timeout(stream)
                record.error = "deadline passed while the server kept the stream open"
                return
            for line in lines.feed(data):
                if line[:6] == b"data: ":  # vLLM's framing, checked first: most lines
                    payload = line[6:-1] if line[-1:] == b"\r" else line[6:]
                elif not line:  # the blank line that ends an event
                    continue
                else:
                    other = data_payload(line)
                    if other is None:
                        continue
                    payload = other
                if self._event(payload, now, record, stream):
                    return

    def _event(self, payload: bytes, now: int, record: RequestRecord, stream: _Stream) -> bool:
        """Take one `data` payload that arrived at `now`; True if it ended the request."""
        if payload[:1] != b"{":
            payload = payload.strip()
            if payload == self.done_marker:
                record.end_ns = now
                return True
        try:
            event = self._decode(payload)
        except msgspec.ValidationError as exc:  # JSON, but not an event of this API
            record.outcome = Outcome.MALFORMED_EVENT
            record.error = _clip(f"unexpected event ({exc}): {_text(payload)}")
            return True
        except msgspec.DecodeError:
            record.outcome = Outcome.MALFORMED_EVENT
            record.error = _clip(f"not JSON: {_text(payload)}")
            return True
        meaning = self.interpret(event)
        if meaning.error is not None:
            record.outcome = Outcome.SERVER_ERROR_EVENT
            record.error = _clip(meaning.error)
            return True
        if meaning.finish_reason in self.early_finish_reasons:
            stream.ended_early = meaning.finish_reason  # read on to the end marker
        _take(meaning, now, stream)
        if meaning.done:
            record.end_ns = now
            return True
        return False


def _take(meaning: EventMeaning, now: int, stream: _Stream) -> None:
    if meaning.prompt_tokens is not None:
        stream.prompt_tokens = meaning.prompt_tokens
    if meaning.output_tokens is not None:
        stream.usage_tokens = meaning.output_tokens
    tokens = meaning.tokens
    if tokens and meaning.cumulative_tokens is not None:
        # Per-event usage (vLLM continuous_usage_stats): this event's exact token count.
        tokens = max(meaning.cumulative_tokens - stream.cumulative, 1)
        stream.cumulative = meaning.cumulative_tokens
    if not tokens:
        return
    if stream.first_token_ns is None:
        stream.first_token_ns = now
    stream.last_token_ns = now
    stream.event_ns.append(now)
    stream.event_tokens.append(tokens)


def _is_event_stream(content_type: str | None) -> bool:
    """A missing Content-Type is given the benefit of the doubt; any other type is not SSE."""
    if content_type is None:
        return True
    return content_type.partition(";")[0].strip().lower() == _EVENT_STREAM


def _timeout(stream: _Stream) -> Outcome:
    return Outcome.TIMEOUT_TTFT if stream.first_token_ns is None else Outcome.TIMEOUT_TOTAL


def _text(payload: bytes) -> str:
    return payload.decode("utf-8", errors="replace")


def _clip(text: str) -> str:
    return text if len(text) <= _ERROR_TEXT_LIMIT else text[:_ERROR_TEXT_LIMIT] + "…"
