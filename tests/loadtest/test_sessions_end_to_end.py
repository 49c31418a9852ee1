"""`workload.sessions` end to end: synthetic four-turn conversations against a simulated vLLM
(closed loop, chat API), then the report's TTFT by turn. One run of about 10 s."""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path

import pandas as pd
import pytest

from analysis.traffic import TURN_COLUMNS
from quantbench.cli import main

pytestmark = pytest.mark.slow

USERS, TURNS, USER_TOKENS, OUTPUT_TOKENS, SYSTEM_TOKENS, THINK_S = 4, 4, 200, 32, 300, 0.2


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sessions")
    config = root / "bench.yaml"
    config.write_text(f"""
name: sessions
targets:
  - name: sim
    sim: {{stack: vllm, quant: awq, speed: 20}}
workload:
  endpoint: chat
  output_tokens: {OUTPUT_TOKENS}
  sessions:
    turns: {TURNS}
    user_tokens: {USER_TOKENS}
    think_time: {THINK_S}s
    system_prompt_tokens: {SYSTEM_TOKENS}
load: {{mode: concurrency, stages: [{USERS}], warmup: 0s, stage_duration: 4s}}
""")
    assert main(["run", str(config), "--out", str(root / "runs")]) == 0
    (found,) = (root / "runs").iterdir()
    return found


def _records(run_dir: Path) -> pd.DataFrame:
    lines = (run_dir / "requests.jsonl").read_text().splitlines()
    return pd.DataFrame([json.loads(line) for line in lines])


def test_each_turn_carries_the_history_and_waits_for_the_answer_and_think_time(
    run_dir: Path,
) -> None:
    records = _records(run_dir)
    ok = records[records["outcome"] == "ok"]
    assert set(ok["turn"]) == set(range(TURNS)), "conversations ran to their last turn"
    growth = []
    for _, conversation in ok.groupby(["user", "session"]):
        turns = conversation.sort_values("turn")
        assert list(turns["turn"]) == list(range(len(turns))), "turns in order, none skipped"
        for before, after in pairwise(turns.to_dict("records")):
            # The whole history: the previous prompt, its answer (as long as the server made
            # it) and the new user message, plus the chat template's few tokens per message.
            added = after["prompt_tokens"] - before["prompt_tokens"] - before["output_tokens"]
            growth.append(added - USER_TOKENS)
            # Sent after the previous answer ended and the user's think time passed.
            assert after["scheduled_ns"] - before["end_ns"] >= THINK_S * 1e9
    assert growth and len(set(growth)) == 1 and 0 <= growth[0] <= 16, set(growth)
    first = ok[ok["turn"] == 0]["prompt_tokens"]
    assert (first >= SYSTEM_TOKENS + USER_TOKENS).all()


def test_ttft_by_turn_is_reported_from_the_records(run_dir: Path) -> None:
    turns = pd.read_csv(run_dir / "turns.csv")
    assert list(turns.columns) == TURN_COLUMNS
    assert list(turns["turn"]) == list(range(TURNS))
    records = _records(run_dir)
    ok = records[(records["outcome"] == "ok") & ~records["warmup"]]
    for row in turns.to_dict("records"):
        mine = ok[ok["turn"] == row["turn"]]
        assert row["ok"] == len(mine)
        assert row["ttft_mean_ms"] == pytest.approx(mine["ttft_ms"].mean(), abs=1e-3)
        assert row["prompt_tokens_mean"] == pytest.approx(mine["prompt_tokens"].mean(), abs=1e-3)
    assert turns["prompt_tokens_mean"].is_monotonic_increasing
    report = (run_dir / "report.md").read_text()
    assert "## TTFT by conversation turn" in report
    # Later turns find the conversation so far in vLLM's prefix cache.
    server = pd.read_csv(run_dir / "server_stages.csv")
    assert server.loc[0, "prefix_cache_hit_rate"] > 0.3
