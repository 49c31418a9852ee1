"""`describe_trace` on small traces whose statistics are known by hand."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from loadtest.traces import Trace, describe_trace, prefix_hits


def _trace(
    offsets: list[float],
    inputs: list[int],
    outputs: list[int],
    sessions: list[int] | None = None,
    blocks: list[list[int] | None] | None = None,
) -> Trace:
    return Trace(
        source="t.jsonl",
        format="mooncake",
        offset_s=np.array(offsets, dtype=float),
        input_tokens=np.array(inputs, dtype=np.int64),
        output_tokens=np.array(outputs, dtype=np.int64),
        row=np.arange(len(offsets), dtype=np.int64),
        session=None if sessions is None else np.array(sessions, dtype=np.int64),
        hash_ids=None if blocks is None else pa.array(blocks, pa.list_(pa.int64())),
        span_s=float(offsets[-1]),
    )


def test_evenly_spaced_arrivals_are_not_bursty() -> None:
    summary = describe_trace(_trace(list(range(0, 100, 2)), [10] * 50, [5] * 50)).summary
    assert summary.requests == 50 and summary.span_s == 98
    assert summary.mean_rate_per_s == pytest.approx(50 / 98)
    assert summary.interarrival_cv == pytest.approx(0.0)
    assert summary.rate_bucket_s == 1 and summary.peak_rate_per_s == 1
    assert summary.input_output_spearman is None  # constant lengths: no correlation
    assert summary.sessions is None and summary.prefix is None


def test_a_burst_raises_the_peak_and_the_dispersion() -> None:
    calm = list(np.arange(0, 100, 1.0))
    burst = sorted(calm + list(50 + np.arange(40) / 40))  # 40 more inside one second
    n = len(burst)
    summary = describe_trace(_trace(burst, [10] * n, [5] * n)).summary
    assert summary.peak_rate_per_s == 41  # the bucket [50, 51)
    assert summary.peak_to_mean == pytest.approx(41 / (n / 99))
    assert summary.interarrival_cv is not None and summary.interarrival_cv > 0.5  # calm: 0
    assert summary.dispersion_index is not None and summary.dispersion_index > 10


def test_lengths_and_their_rank_correlation() -> None:
    inputs = [100, 200, 300, 400, 0]
    outputs = [1, 2, 3, 4, 0]
    summary = describe_trace(_trace([0, 1, 2, 3, 4], inputs, outputs)).summary
    assert summary.input_tokens.p50 == 200 and summary.input_tokens.max == 400
    assert summary.input_tokens.zero == 1 and summary.output_tokens.zero == 1
    assert summary.input_tokens.mean == 200
    assert summary.input_output_spearman == pytest.approx(1.0)


def test_sessions() -> None:
    summary = describe_trace(_trace([0, 1, 2, 3, 4], [1] * 5, [1] * 5, [0, 1, 0, 0, -1])).summary
    assert summary.sessions is not None
    assert summary.sessions.sessions == 2
    assert summary.sessions.turns_max == 3 and summary.sessions.turns_mean == 2
    assert summary.sessions.multi_turn_request_share == pytest.approx(3 / 5)
    assert summary.sessions.requests_without_session == 1


def test_prefix_reuse_counts_the_leading_run_of_blocks_seen_before() -> None:
    # Block size 4. Row 1 shares [1, 2] with row 0, then a new block: 2 blocks hit.
    # Row 2 starts with a new block: nothing hits though 2 was seen. Row 3 repeats row 0
    # but is shorter than its blocks: hits are capped at its 5 tokens. Row 4 has no blocks.
    blocks = [[1, 2, 3], [1, 2, 4], [5, 2], [1, 2, 3], None]
    trace = _trace([0, 1, 2, 3, 4], [12, 10, 8, 5, 9], [1] * 5, blocks=blocks)
    assert prefix_hits(trace, 4).tolist() == [0, 8, 0, 5, 0]
    prefix = describe_trace(trace, block_size=4).summary.prefix
    assert prefix is not None
    assert prefix.reused_token_share == pytest.approx(13 / 44)
    assert prefix.distinct_blocks == 5 and prefix.requests_with_blocks == 4
    assert prefix.block_count_mismatches == 1  # row 3: 3 blocks for 5 tokens at 4 per block
