"""The replay dispatcher (pure, on a fake clock): when each trace request goes, who sends it,
and what it asks for."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from loadtest.config import LoadConfig, SampleGoal, WorkloadConfig
from loadtest.dispatch import Wait
from loadtest.prompts import PromptSource
from loadtest.replay import (
    ReplayLaunch,
    SessionTurns,
    TracePrompts,
    assigned_requests,
    replay_plan,
    replay_warnings,
    session_blocks,
    stage_lengths_s,
)
from loadtest.shapes import LoadPlan
from loadtest.traces import Trace
from loadtest.workload import VOCABULARY


def _trace(sessions: list[int] | None = None, blocks: list[list[int]] | None = None) -> Trace:
    offsets = [0.0, 0.5, 0.5, 2.0]
    return Trace(
        source="t.jsonl",
        format="mooncake",
        offset_s=np.array(offsets),
        input_tokens=np.array([32, 48, 16, 64]),
        output_tokens=np.array([4, 0, 6, 8]),
        row=np.array([3, 0, 1, 2]),  # the file's order differed (sorted by time)
        session=None if sessions is None else np.array(sessions),
        hash_ids=None if blocks is None else pa.array(blocks, pa.list_(pa.int64())),
        span_s=2.0,
    )


def _load(stages: list[float]) -> LoadConfig:
    return LoadConfig.model_validate({"mode": "replay", "stages": stages, "warmup": 0})


def test_each_stage_replays_the_trace_at_its_multiple_of_the_rate() -> None:
    trace, load = _trace(), _load([1, 4])
    assert stage_lengths_s(trace, load) == [2.0, 0.5]
    plan = LoadPlan(load, stage_lengths_s=stage_lengths_s(trace, load))
    clock = [0.0]
    launches = []
    for step in replay_plan(plan, trace, lambda: clock[0]):
        if isinstance(step, Wait):
            clock[0] = step.until_s  # the fake clock jumps to each wait's end
        else:
            assert isinstance(step, ReplayLaunch) and step.at_s <= clock[0]
            launches.append((step.stage.index, step.request.row, step.at_s))
    assert launches == [
        (0, 3, 0.0), (0, 0, 0.5), (0, 1, 0.5), (0, 2, 2.0),
        (1, 3, 2.0), (1, 0, 2.125), (1, 1, 2.125), (1, 2, 2.5),
    ]  # fmt: skip


def test_dispatchers_split_rows_and_keep_a_session_together() -> None:
    plain = _trace()
    split = [[r.index for r in assigned_requests(plain, k, 2)] for k in range(2)]
    assert split == [[0, 2], [1, 3]]
    with_sessions = _trace(sessions=[5, 5, -1, 5])
    split = [[r.index for r in assigned_requests(with_sessions, k, 2)] for k in range(2)]
    assert split == [[2], [0, 1, 3]]  # session 5 on one process; the row without one by index
    turns = SessionTurns.of(with_sessions)
    assert turns is not None
    assert turns.turn.tolist() == [0, 1, -1, 2] and turns.last.tolist() == [
        False,
        False,
        False,
        True,
    ]
    assert SessionTurns.of(plain) is None


def test_requests_have_the_rows_lengths_and_blocks_make_shared_prefixes() -> None:
    workload = WorkloadConfig.model_validate({"trace": {"file": "t.jsonl", "block_size": 8}})
    prompts = TracePrompts(workload, PromptSource(VOCABULARY))
    trace = _trace(blocks=[[1, 2, 3, 4], [1, 2, 9, 9, 9, 9], [7, 8], [1, 2, 3, 4, 5, 6, 7, 8]])
    rows = list(assigned_requests(trace))
    made = [prompts.request(row, salt="0:0") for row in rows]
    assert [m.prompt_tokens for m in made] == [32, 48, 16, 64]
    assert [m.max_tokens for m in made] == [4, 1, 6, 8]  # a 0-token row is sent with 1
    words = [m.prompt.split() for m in made]
    assert words[0][:16] == words[1][:16] and words[0][16:24] != words[1][16:24]
    assert words[3][:32] == words[0]
    later = prompts.request(rows[0], salt="0:1").prompt.split()
    assert later[:8] != words[0][:8], "another stage's blocks are other text"


def test_a_session_row_without_blocks_extends_its_sessions_earlier_prompts() -> None:
    first, second = session_blocks(3, 20, 8), session_blocks(3, 40, 8)
    assert len(first) == 3 and second[:3] == first and all(b < 0 for b in second)
    assert set(session_blocks(4, 20, 8)).isdisjoint(first)


def test_a_stage_with_too_few_measured_requests_is_named() -> None:
    load = LoadConfig.model_validate({"mode": "replay", "stages": [1, 4], "warmup": 0.5})
    lines = replay_warnings(_trace(), load, SampleGoal(percentile="p50", min_ok=3))
    assert lines[0] == ""  # offsets 0.5, 0.5, 2.0 are after the warm-up
    assert lines[1].startswith("stage 2 (4× the trace's rate, 0.5 s) replays 1 requests")


def test_over_chat_a_prompt_leaves_room_for_the_servers_template() -> None:
    workload = WorkloadConfig.model_validate({"trace": {"file": "t.jsonl", "block_size": 8}})
    source = PromptSource(VOCABULARY)
    (row, *_) = assigned_requests(_trace(blocks=[[1, 2, 3, 4], [1], [2], [3]]))
    plain = TracePrompts(workload, source).request(row)
    chat = TracePrompts(workload, source, template_tokens=7).request(row)
    assert chat.prompt_tokens == plain.prompt_tokens == 32  # what the server will count
    assert len(chat.prompt.split()) == 25 and plain.prompt.split()[:25] == chat.prompt.split()
