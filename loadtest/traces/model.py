"""A trace as columns: one row per request, in send order, never one Python object per row.

`Trace` holds numpy arrays (send offsets, token counts, the row's record index in its file,
session codes) and an Arrow list column of `hash_ids`; `iter_requests` walks it lazily, a
few thousand rows at a time, for the dispatcher that sends them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa

__all__ = ["Trace", "TraceError", "TraceRequest", "iter_requests", "requests_at"]

_CHUNK_ROWS = 4096


class TraceError(ValueError):
    """A trace file that cannot be replayed; the message is one line, `file:line: what`."""


@dataclass(frozen=True, eq=False)
class Trace:
    """Columns of equal length, sorted by `offset_s` (seconds from the trace's origin).

    `row`: each request's record index in the file (0 = the first data row), so a result can
    point back at its trace line. `session`: integer codes, -1 for none; None when the file
    has no session column. `hash_ids`: list<int64> per row (null: no blocks), or None.
    `span_s`: the time the trace covers (a window's length, else its last offset).
    `out_of_order`: rows the file listed after a later timestamp (they were sorted).
    """

    source: str
    format: str
    offset_s: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    row: np.ndarray
    session: np.ndarray | None
    hash_ids: pa.ListArray | None
    span_s: float
    out_of_order: int = 0

    def __len__(self) -> int:
        return len(self.offset_s)

    def take(self, indices: np.ndarray) -> Trace:
        """The rows at `indices` (ascending), other fields unchanged."""
        return replace(
            self,
            offset_s=self.offset_s[indices],
            input_tokens=self.input_tokens[indices],
            output_tokens=self.output_tokens[indices],
            row=self.row[indices],
            session=None if self.session is None else self.session[indices],
            hash_ids=None if self.hash_ids is None else self.hash_ids.take(pa.array(indices)),
        )

    def with_offsets(self, offset_s: np.ndarray, span_s: float) -> Trace:
        return replace(self, offset_s=offset_s, span_s=span_s)


@dataclass(frozen=True, slots=True)
class TraceRequest:
    """One request of a trace, as the dispatcher sends it."""

    index: int  # position in this (windowed, sampled) trace
    row: int  # record index in the file
    offset_s: float  # send time from the start of the replay
    input_tokens: int
    output_tokens: int
    session: int | None
    hash_ids: tuple[int, ...]


def iter_requests(
    trace: Trace, worker: int = 0, workers: int = 1, start: int = 0
) -> Iterator[TraceRequest]:
    """The requests in send order; worker k of N takes rows k, k+N, … from row `start`.

    Converts `_CHUNK_ROWS` rows at a time to Python values, so memory stays that of the
    columns however long the trace.
    """
    if not 0 <= worker < workers:
        raise ValueError(f"worker {worker} is not in 0..{workers - 1}")
    first = start + (worker - start) % workers
    for chunk_start in range(first, len(trace), _CHUNK_ROWS * workers):
        picks = slice(chunk_start, chunk_start + _CHUNK_ROWS * workers, workers)
        offsets = trace.offset_s[picks].tolist()
        inputs = trace.input_tokens[picks].tolist()
        outputs = trace.output_tokens[picks].tolist()
        rows = trace.row[picks].tolist()
        sessions = trace.session[picks].tolist() if trace.session is not None else None
        blocks = _blocks(trace.hash_ids, picks, len(offsets))
        for i, offset in enumerate(offsets):
            session = sessions[i] if sessions is not None else -1
            yield TraceRequest(
                index=chunk_start + i * workers,
                row=rows[i],
                offset_s=offset,
                input_tokens=inputs[i],
                output_tokens=outputs[i],
                session=session if session >= 0 else None,
                hash_ids=blocks[i],
            )


def requests_at(trace: Trace, indices: np.ndarray) -> list[TraceRequest]:
    """The requests at `indices` (ascending; a few thousand at a time), as Python values."""
    offsets = trace.offset_s[indices].tolist()
    inputs = trace.input_tokens[indices].tolist()
    outputs = trace.output_tokens[indices].tolist()
    rows = trace.row[indices].tolist()
    sessions = trace.session[indices].tolist() if trace.session is not None else None
    if trace.hash_ids is None:
        blocks: list[tuple[int, ...]] = [()] * len(offsets)
    else:
        lists = trace.hash_ids.take(pa.array(indices, pa.int64())).to_pylist()
        blocks = [tuple(ids) if ids is not None else () for ids in lists]
    out = []
    for i, index in enumerate(indices.tolist()):
        session = sessions[i] if sessions is not None else -1
        out.append(
            TraceRequest(
                index=index,
                row=rows[i],
                offset_s=offsets[i],
                input_tokens=inputs[i],
                output_tokens=outputs[i],
                session=session if session >= 0 else None,
                hash_ids=blocks[i],
            )
        )
    return out


def _blocks(hash_ids: pa.ListArray | None, picks: slice, count: int) -> list[tuple[int, ...]]:
    if hash_ids is None:
        return [()] * count
    stop = min(picks.stop, len(hash_ids))
    if picks.step == 1:
        lists = hash_ids.slice(picks.start, stop - picks.start).to_pylist()
    else:  # another worker's rows stay as Arrow data
        lists = hash_ids.take(pa.array(range(picks.start, stop, picks.step))).to_pylist()
    return [tuple(ids) if ids is not None else () for ids in lists]
