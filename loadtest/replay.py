"""Replaying a trace (`load.mode: replay`): which requests a dispatcher sends and when, and
what each one asks for. Pure, testable with a fake clock like `loadtest.dispatch`; the Locust
adapter only executes the steps.

A stage replays the whole controlled trace (`workload.trace`: window, sample, speedup) at
`stage.load` × its rate: request i is scheduled at `stage.start_s + offset_i / load`, so the
journal's scheduled times are the trace's timestamps ÷ speedup ÷ multiplier. The trace is
walked lazily, a few thousand rows at a time, never as one Python object per row. With N
dispatchers (generator processes) dispatcher k takes the rows whose session id (or, without
one, whose row index) is k modulo N: each row is sent once, and every turn of a session by
the same process, which sends it only after the session's previous turn has ended
(`SessionOrder`, in the adapter).

Each request's prompt is `input_tokens` tokens whose leading blocks follow its `hash_ids`
(`BlockPrompts`: equal ids give byte-identical prefixes). The blocks' text is salted by the
stage (and repeat): every stage replays the trace's own prefix reuse, from a prefix cache that
holds nothing of the stages before it (else a growth stage would re-send the previous stage's
prompts verbatim and find them all cached, a hit rate production never sees). A session
row without `hash_ids` extends its session's earlier prompts (blocks chosen by session and
position), as a conversation's history does. The output length is the row's, pinned as every
mode pins it. A row with 0 tokens (BurstGPT logs failures that way) is sent with 1: no
server generates 0.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from loadtest.config import LoadConfig, SampleGoal, WorkloadConfig, load_unit
from loadtest.dispatch import Launch, Wait
from loadtest.prompts import PromptSource
from loadtest.shapes import LoadPlan
from loadtest.traces import (
    BlockPrompts,
    Trace,
    TraceRequest,
    apply_controls,
    read_trace_config,
    requests_at,
)
from loadtest.workload import GenRequest

__all__ = [
    "ReplayLaunch",
    "SessionTurns",
    "TracePrompts",
    "assigned_requests",
    "controlled_trace",
    "longest_trace_request",
    "replay_plan",
    "replay_warnings",
    "session_blocks",
    "stage_lengths_s",
]

_CHUNK_ROWS = 4096
_SESSION_STRIDE = 1_000_003  # block positions per session in `session_blocks`' id space


@dataclass(frozen=True)
class ReplayLaunch(Launch):
    """A `Launch` of one trace request (`index` is its position in the controlled trace)."""

    request: TraceRequest


def controlled_trace(workload: WorkloadConfig) -> Trace:
    """The trace `workload.trace` names, read and controlled (window, sample, speedup; the
    sample seeded by `workload.seed`): what every stage replays."""
    if workload.trace is None:
        raise ValueError("no workload.trace to replay")
    return apply_controls(read_trace_config(workload.trace), workload.trace, workload.seed)


@dataclass(frozen=True)
class SessionTurns:
    """Each row's turn in its session (0 = its first; -1 without a session) and whether it
    is the session's last: two arrays, so the replay keeps state only for open sessions."""

    turn: np.ndarray
    last: np.ndarray

    @classmethod
    def of(cls, trace: Trace) -> SessionTurns | None:
        if trace.session is None:
            return None
        codes = pd.Series(trace.session)
        grouped = codes.groupby(codes)
        turn = grouped.cumcount().to_numpy(np.int64, copy=True)
        last = (turn == grouped.transform("size").to_numpy(np.int64) - 1) & (trace.session >= 0)
        turn[trace.session < 0] = -1
        return cls(turn, last)


def stage_lengths_s(trace: Trace, load: LoadConfig) -> list[float]:
    """Each stage's length: the trace's span at the stage's rate multiplier."""
    return [trace.span_s / float(multiplier) for multiplier in load.stages]


def _owner(trace: Trace, indices: np.ndarray) -> np.ndarray:
    """Who sends each row: its session id when it has one, else its row index."""
    if trace.session is None:
        return indices
    sessions = trace.session[indices]
    return np.where(sessions >= 0, sessions, indices)


def assigned_requests(trace: Trace, slot: int = 0, dispatchers: int = 1) -> Iterator[TraceRequest]:
    """The requests dispatcher `slot` of `dispatchers` sends, in send order, lazily."""
    if not 0 <= slot < dispatchers:
        raise ValueError(f"dispatcher {slot} is not in 0..{dispatchers - 1}")
    step = _CHUNK_ROWS * dispatchers
    for start in range(0, len(trace), step):
        indices = np.arange(start, min(start + step, len(trace)), dtype=np.int64)
        if dispatchers > 1:
            indices = indices[_owner(trace, indices) % dispatchers == slot]
        if len(indices):
            yield from requests_at(trace, indices)


def replay_plan(
    plan: LoadPlan,
    trace: Trace,
    now_s: Callable[[], float],
    slot: int = 0,
    dispatchers: int = 1,
) -> Iterator[ReplayLaunch | Wait]:
    """The steps of one replay dispatcher over every stage of `plan` (its loads are rate
    multipliers); `now_s()` is the run time (seconds since stage 0)."""
    stage = plan.stage_at(0.0)
    while stage is not None:
        multiplier = stage.load
        for request in assigned_requests(trace, slot, dispatchers):
            at_s = stage.start_s + request.offset_s / multiplier
            while at_s > now_s():  # a Wait may end early (an ending decided elsewhere)
                yield Wait(at_s)
            yield ReplayLaunch(stage, request.index, at_s, request)
        stage = plan.following(stage)


def session_blocks(session: int, input_tokens: int, block_size: int) -> tuple[int, ...]:
    """Block ids for a session row without `hash_ids`: block j of session s is the same in
    every turn, so a later (longer) turn starts with an earlier turn's whole prompt. Negative,
    so they never meet a trace's own ids."""
    count = -(-input_tokens // block_size)
    base = -1 - session * _SESSION_STRIDE
    return tuple(base - j for j in range(count))


class TracePrompts:
    """Builds the `GenRequest` of each trace row (see the module docstring)."""

    def __init__(
        self, workload: WorkloadConfig, prompts: PromptSource, template_tokens: int = 0
    ) -> None:
        """`template_tokens`: what the server's chat template adds to each prompt; each
        prompt is that much shorter, so the server counts the row's own `input_tokens`."""
        if workload.trace is None:
            raise ValueError("TracePrompts needs workload.trace")
        self._template_tokens = template_tokens
        self._block_size = workload.trace.block_size
        self._blocks = BlockPrompts(prompts, self._block_size, seed=workload.seed)

    def request(self, row: TraceRequest, salt: int | str = "") -> GenRequest:
        """Row `row`'s request; `salt` (the stage) gives its blocks text of that stage only."""
        tokens = max(row.input_tokens, 1)
        own = max(tokens - self._template_tokens, 1)  # what the prompt text itself holds
        blocks: Sequence[int] = row.hash_ids
        if not blocks and row.session is not None:
            blocks = session_blocks(row.session, own, self._block_size)
        prompt = self._blocks.make(own, blocks, unique=row.row, salt=salt)
        return GenRequest(prompt=prompt, prompt_tokens=tokens, max_tokens=max(row.output_tokens, 1))


def longest_trace_request(
    trace: Trace, workload: WorkloadConfig, prompts: PromptSource
) -> GenRequest:
    """The trace's longest request (prompt plus output tokens), for the readiness probe."""
    index = int((trace.input_tokens + trace.output_tokens).argmax())
    (row,) = requests_at(trace, np.array([index], dtype=np.int64))
    return TracePrompts(workload, prompts).request(row)


def replay_warnings(trace: Trace, load: LoadConfig, goal: SampleGoal) -> list[str]:
    """Per stage, a line when its replay holds fewer measured requests than its percentile
    needs (a replay stage is never extended, so it would be invalid), else ""."""
    lines = []
    for position, length_s in enumerate(stage_lengths_s(trace, load)):
        multiplier = float(load.stages[position])
        measured = int((trace.offset_s / multiplier >= load.warmup).sum())
        where = f"stage {position + 1} ({load_unit('replay', multiplier)}, {length_s:.3g} s)"
        lines.append(
            f"{where} replays {measured} requests after its warm-up, fewer than the "
            f"{goal.min_ok} a {goal.percentile} needs: it will be invalid (replay a longer "
            "window, sample more, or lower the warm-up)"
            if measured < goal.min_ok
            else ""
        )
    return lines
