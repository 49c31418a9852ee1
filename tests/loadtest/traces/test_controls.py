"""Window, sample, speedup and growth stages over a columnar trace; lazy iteration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from loadtest.traces import (
    Trace,
    TraceConfig,
    TraceError,
    apply_controls,
    growth_stages,
    iter_requests,
    sample,
    speedup,
    window,
)


def _trace(offsets: list[float], blocks: bool = True) -> Trace:
    n = len(offsets)
    return Trace(
        source="t.jsonl",
        format="mooncake",
        offset_s=np.array(offsets, dtype=float),
        input_tokens=np.arange(n, dtype=np.int64) + 100,
        output_tokens=np.arange(n, dtype=np.int64) + 1,
        row=np.arange(n, dtype=np.int64),
        session=np.arange(n, dtype=np.int64) % 3,
        hash_ids=pa.array([[i, i + 1] for i in range(n)], pa.list_(pa.int64())) if blocks else None,
        span_s=float(offsets[-1]),
    )


def test_speedup_divides_offsets_and_span() -> None:
    trace = _trace([0, 1, 3, 10])
    fast = speedup(trace, 2)
    assert fast.offset_s.tolist() == [0, 0.5, 1.5, 5] and fast.span_s == 5
    assert fast.input_tokens.tolist() == trace.input_tokens.tolist()
    assert speedup(trace, 1) is trace


def test_window_keeps_its_rows_timed_from_its_start() -> None:
    trace = _trace([0, 1, 2, 3, 4, 5, 6])
    cut = window(trace, 2, 3)  # [2, 5)
    assert cut.offset_s.tolist() == [0, 1, 2] and cut.span_s == 3
    assert cut.row.tolist() == [2, 3, 4]
    assert cut.hash_ids is not None and cut.hash_ids.to_pylist() == [[2, 3], [3, 4], [4, 5]]
    tail = window(trace, 4.5)
    assert tail.row.tolist() == [5, 6] and tail.span_s == 1.5  # to the end, last row included
    with pytest.raises(TraceError, match="past the trace's end"):
        window(trace, 7)
    with pytest.raises(TraceError, match="no requests between"):
        window(_trace([0, 10]), 2, 3)


def test_sample_is_seeded_thinning() -> None:
    trace = _trace(list(np.linspace(0, 100, 10_000)))
    first, again, other = sample(trace, 0.3, 7), sample(trace, 0.3, 7), sample(trace, 0.3, 8)
    assert first.row.tolist() == again.row.tolist()
    assert first.row.tolist() != other.row.tolist()
    assert 2700 < len(first) < 3300
    assert first.span_s == trace.span_s  # the same time, fewer requests
    assert np.all(np.diff(first.offset_s) >= 0)
    assert sample(trace, 1.0, 7) is trace


def test_apply_controls_windows_in_trace_time_then_samples_then_speeds_up() -> None:
    trace = _trace(list(range(100)))
    config = TraceConfig(file=Path("t.jsonl"), start="10s", duration="20s", speedup=4)
    controlled = apply_controls(trace, config, seed=1)
    assert controlled.row.tolist() == list(range(10, 30))
    assert controlled.offset_s.tolist() == [i / 4 for i in range(20)]
    assert controlled.span_s == 5.0


def test_growth_stages_replay_the_whole_trace_faster() -> None:
    trace = _trace([0, 5, 10, 20])
    stages = growth_stages(trace, [1, 1.5, 4])
    assert [s.duration_s for s in stages] == [20, 20 / 1.5, 5]
    assert [s.requests for s in stages] == [4, 4, 4]
    assert [s.rate_per_s for s in stages] == pytest.approx([0.2, 0.3, 0.8])


def test_iter_requests_walks_rows_lazily_and_splits_across_workers() -> None:
    n = 10_001  # more than two chunks of 4096
    trace = _trace(list(np.arange(n) / 10))
    everything = list(iter_requests(trace))
    assert [r.index for r in everything] == list(range(n))
    last = everything[-1]
    assert (last.row, last.input_tokens, last.output_tokens) == (n - 1, n + 99, n)
    assert last.hash_ids == (n - 1, n) and last.session == (n - 1) % 3
    assert last.offset_s == pytest.approx((n - 1) / 10)
    shares = [list(iter_requests(trace, worker=k, workers=3)) for k in range(3)]
    assert sorted(r.index for share in shares for r in share) == list(range(n))
    assert all(r.index % 3 == k for k, share in enumerate(shares) for r in share)
    resumed = iter_requests(trace, worker=1, workers=3, start=9995)  # global rows i % 3 == 1
    assert [r.index for r in resumed] == [9997, 10000]
    plain = list(iter_requests(_trace([0, 1], blocks=False)))
    assert [r.hash_ids for r in plain] == [(), ()]
