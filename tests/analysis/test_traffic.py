"""TTFT by conversation turn, and the replayed trace's summary, as the report shows them."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.document import to_markdown
from analysis.traffic import TURN_COLUMNS, trace_blocks, turn_blocks, turn_latency
from loadtest.traces import Trace, describe_trace
from loadtest.traces.stats import TraceSummary


def _requests() -> pd.DataFrame:
    rows = []
    for user in range(70):
        for turn, (prompt, ttft) in enumerate([(100, 10.0), (300, 20.0)]):
            rows.append(
                {
                    "target": "a",
                    "stage": 0,
                    "mode": "concurrency",
                    "load": 4.0,
                    "turn": turn,
                    "warmup": False,
                    "outcome": "ok",
                    "ttft_ms": ttft + user % 3,
                    "prompt_tokens": prompt,
                }
            )
    rows.append({**rows[0], "warmup": True, "ttft_ms": 1e6})  # warm-up: left out
    rows.append({**rows[1], "outcome": "timeout_ttft", "ttft_ms": None})  # counted, no TTFT
    rows.append({**rows[0], "turn": None})  # not a conversation's turn
    return pd.DataFrame(rows)


def test_turn_latency_groups_measured_requests_by_turn() -> None:
    turns = turn_latency(_requests())
    assert list(turns.columns) == TURN_COLUMNS
    assert turns[["turn", "requests", "ok"]].values.tolist() == [[0, 70, 70], [1, 71, 70]]
    ttft = np.array([10.0 + u % 3 for u in range(70)])
    assert turns.loc[0, "ttft_mean_ms"] == ttft.mean()
    assert turns.loc[0, "ttft_p50_ms"] == np.quantile(ttft, 0.5)
    assert turns.loc[1, "ttft_p95_ms"] == np.quantile(ttft + 10, 0.95)
    text = to_markdown(turn_blocks(turns, {"a": "A"}))
    assert "| A | 1 (4 users) | 2 | 71 | 70 | 300 | 21.0 | 21.0 | 22.0 |" in text


def test_no_turns_no_section() -> None:
    requests = _requests().drop(columns="turn")
    assert turn_latency(requests).empty and turn_blocks(turn_latency(requests), {}) == []


def test_trace_section_says_what_describe_says() -> None:
    trace = Trace(
        source="t.jsonl",
        format="mooncake",
        offset_s=np.array([0.0, 0.1, 0.2, 5.0]),
        input_tokens=np.array([10, 20, 30, 40]),
        output_tokens=np.array([1, 2, 3, 4]),
        row=np.arange(4),
        session=None,
        hash_ids=None,
        span_s=5.0,
    )
    summary = describe_trace(trace).summary  # as trace.json holds it
    text = to_markdown(trace_blocks(TraceSummary.model_validate_json(summary.model_dump_json())))
    assert "4 requests over 5.0 s" in text and "| input | 25 |" in text
    assert trace_blocks(None) == []
