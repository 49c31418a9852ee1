"""What a trace holds, as numbers: lengths, arrivals and burstiness, sessions, prefix reuse.

Pure functions of a `Trace`; `quantbench trace describe` renders them (table and plots), and
a run can store the same `TraceSummary` as JSON beside its results.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.compute as pc
from pydantic import BaseModel

from loadtest.traces.model import Trace

__all__ = [
    "TRACE_FILE",
    "Lengths",
    "PrefixReuse",
    "Sessions",
    "TraceDescription",
    "TraceSummary",
    "describe_trace",
    "prefix_hits",
    "read_trace_summary",
    "write_trace_summary",
]

TRACE_FILE = "trace.json"  # the replayed trace's summary, in a run directory

_BUCKETS_S = (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200)


class Lengths(BaseModel):
    """A token-count distribution (from the raw per-request values)."""

    mean: float
    p50: float
    p90: float
    p99: float
    min: int
    max: int
    zero: int  # rows with 0 tokens (BurstGPT logs failed requests with 0 response tokens)


class Sessions(BaseModel):
    sessions: int
    turns_mean: float
    turns_max: int
    multi_turn_request_share: float  # requests in sessions of 2 or more turns
    requests_without_session: int


class PrefixReuse(BaseModel):
    """`hash_ids` blocks as a prefix cache with room for everything would see them."""

    block_size: int
    requests_with_blocks: int
    distinct_blocks: int
    # Share of all prompt tokens that lie in leading blocks an earlier request already sent:
    # the prefix-cache hit rate of an unbounded cache, the most a server could reuse.
    reused_token_share: float
    # Requests whose block count is not ceil(input_tokens / block_size): a hint that the
    # block size is not the one the trace was made with.
    block_count_mismatches: int


class TraceSummary(BaseModel):
    source: str
    format: str
    requests: int
    span_s: float
    mean_rate_per_s: float
    input_tokens: Lengths
    output_tokens: Lengths
    input_output_spearman: float | None  # rank correlation of input and output lengths
    rate_bucket_s: float
    peak_rate_per_s: float  # the busiest bucket
    peak_to_mean: float
    interarrival_cv: float | None  # 1 for Poisson arrivals, above 1 bursty
    dispersion_index: float | None  # variance / mean of bucket counts: 1 for Poisson
    out_of_order: int
    sessions: Sessions | None
    prefix: PrefixReuse | None


@dataclass(frozen=True)
class TraceDescription:
    """The summary plus the series behind the plots."""

    summary: TraceSummary
    rate_per_s: np.ndarray  # requests per second in each bucket of `summary.rate_bucket_s`
    input_tokens: np.ndarray
    output_tokens: np.ndarray


def _lengths(values: np.ndarray) -> Lengths:
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return Lengths(
        mean=float(values.mean()),
        p50=float(p50),
        p90=float(p90),
        p99=float(p99),
        min=int(values.min()),
        max=int(values.max()),
        zero=int((values == 0).sum()),
    )


def _bucket_s(span_s: float, buckets: int) -> float:
    return next((b for b in _BUCKETS_S if span_s / b <= buckets), _BUCKETS_S[-1])


def _spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    if len(a) < 3 or a.min() == a.max() or b.min() == b.max():
        return None
    ranks_a, ranks_b = pd.Series(a).rank().to_numpy(), pd.Series(b).rank().to_numpy()
    return float(np.corrcoef(ranks_a, ranks_b)[0, 1])  # Spearman: Pearson of the ranks


def _sessions(codes: np.ndarray | None) -> Sessions | None:
    if codes is None:
        return None
    counts = np.bincount(codes[codes >= 0])
    counts = counts[counts > 0]
    return Sessions(
        sessions=len(counts),
        turns_mean=float(counts.mean()),
        turns_max=int(counts.max()),
        multi_turn_request_share=float(counts[counts >= 2].sum() / len(codes)),
        requests_without_session=int((codes < 0).sum()),
    )


def prefix_hits(trace: Trace, block_size: int) -> np.ndarray:
    """Per request, the prompt tokens in leading blocks that an earlier request sent.

    Block ids in these traces identify a block *and everything before it* (vLLM and
    Mooncake chain the hashes), so a cache hits the leading run of blocks seen before.
    """
    hits = np.zeros(len(trace), dtype=np.int64)
    if trace.hash_ids is None:
        return hits
    lists = trace.hash_ids
    counts = pc.fill_null(pc.list_value_length(lists), 0).to_numpy().astype(np.int64)
    flat = lists.flatten().to_numpy()
    parents = np.repeat(np.arange(len(trace)), counts)
    position = np.arange(len(flat)) - np.repeat(np.cumsum(counts) - counts, counts)
    unseen = ~pd.Series(flat).duplicated().to_numpy()
    hit_blocks = counts.copy()
    rows, first = np.unique(parents[unseen], return_index=True)
    hit_blocks[rows] = position[unseen][first]
    np.minimum(hit_blocks * block_size, trace.input_tokens, out=hits)
    return hits


def _prefix(trace: Trace, block_size: int) -> PrefixReuse | None:
    if trace.hash_ids is None:
        return None
    counts = pc.fill_null(pc.list_value_length(trace.hash_ids), 0).to_numpy()
    flat = trace.hash_ids.flatten().to_numpy()
    expected = -(-trace.input_tokens // block_size)
    total = int(trace.input_tokens.sum())
    return PrefixReuse(
        block_size=block_size,
        requests_with_blocks=int((counts > 0).sum()),
        distinct_blocks=int(pd.Series(flat).nunique()),
        reused_token_share=float(prefix_hits(trace, block_size).sum() / total) if total else 0.0,
        block_count_mismatches=int(((counts > 0) & (counts != expected)).sum()),
    )


def describe_trace(trace: Trace, block_size: int = 512, buckets: int = 120) -> TraceDescription:
    """Summary statistics of `trace` and its arrival rate in about `buckets` time buckets."""
    span_s = trace.span_s
    bucket_s = _bucket_s(span_s, buckets)
    edges = np.arange(0.0, span_s + bucket_s, bucket_s)
    if len(edges) < 2:
        edges = np.array([0.0, bucket_s])
    counts, _ = np.histogram(trace.offset_s, bins=edges)
    rate = counts / bucket_s
    gaps = np.diff(trace.offset_s)
    mean_rate = len(trace) / span_s if span_s > 0 else float("nan")
    summary = TraceSummary(
        source=trace.source,
        format=trace.format,
        requests=len(trace),
        span_s=span_s,
        mean_rate_per_s=mean_rate,
        input_tokens=_lengths(trace.input_tokens),
        output_tokens=_lengths(trace.output_tokens),
        input_output_spearman=_spearman(trace.input_tokens, trace.output_tokens),
        rate_bucket_s=bucket_s,
        peak_rate_per_s=float(rate.max()),
        peak_to_mean=float(rate.max() / mean_rate) if span_s > 0 else float("nan"),
        interarrival_cv=float(gaps.std() / gaps.mean())
        if len(gaps) > 1 and gaps.mean() > 0
        else None,
        dispersion_index=float(counts.var() / counts.mean()) if len(counts) > 1 else None,
        out_of_order=trace.out_of_order,
        sessions=_sessions(trace.session),
        prefix=_prefix(trace, block_size),
    )
    return TraceDescription(summary, rate, trace.input_tokens, trace.output_tokens)


def write_trace_summary(run_dir: Path, trace: Trace, block_size: int) -> Path:
    """`trace.json`: `quantbench trace describe`'s summary of the replayed trace, for the
    report (written once; a resumed run keeps the first)."""
    path = run_dir / TRACE_FILE
    if not path.exists():
        summary = describe_trace(trace, block_size=block_size).summary
        temporary = path.with_suffix(".tmp")
        temporary.write_text(summary.model_dump_json(indent=1) + "\n")
        os.replace(temporary, path)
    return path


def read_trace_summary(run_dir: Path) -> TraceSummary | None:
    """The run's `trace.json`, or None when it replayed no trace (or the file is damaged)."""
    path = run_dir / TRACE_FILE
    try:
        return TraceSummary.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
