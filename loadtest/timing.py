"""Derived per-request metrics exactly as MEASUREMENT.md defines them."""

from __future__ import annotations

from collections.abc import Sequence

from loadtest.records import Outcome, RequestRecord

__all__ = ["derive"]

_NS_PER_MS = 1_000_000


def _ms(delta_ns: int) -> float:
    return delta_ns / _NS_PER_MS


def derive(
    record: RequestRecord, token_event_ns: Sequence[int], token_event_counts: Sequence[int]
) -> RequestRecord:
    """Fill TTFT, TPOT, E2E, ITL and schedule lag from the raw timestamps.

    Open loop and batch time latency from `scheduled` (coordinated-omission safe); closed loop from
    `sent`. ITL pools the gaps between token-bearing events, each divided by the tokens the
    later event carried. TPOT is undefined for one output token or fewer.
    """
    origin = record.sent_ns if record.mode == "concurrency" else record.scheduled_ns
    if record.sent_ns is not None:
        record.schedule_lag_ms = _ms(record.sent_ns - record.scheduled_ns)
    if origin is None:
        return record
    if record.first_token_ns is not None:
        record.ttft_ms = _ms(record.first_token_ns - origin)
    if record.end_ns is not None and record.outcome is Outcome.OK:
        record.e2e_ms = _ms(record.end_ns - origin)
    record.itl_ms = [
        (later - earlier) / (_NS_PER_MS * count) if count > 1 else (later - earlier) / _NS_PER_MS
        for earlier, later, count in zip(
            token_event_ns, token_event_ns[1:], token_event_counts[1:], strict=False
        )
    ]
    if (
        record.output_tokens > 1
        and record.first_token_ns is not None
        and record.last_token_ns is not None
    ):
        record.tpot_ms = _ms(record.last_token_ns - record.first_token_ns) / (
            record.output_tokens - 1
        )
    return record
