"""`load.mode: replay` end to end: the shipped synthetic trace replayed against a simulated
vLLM in a growth sweep (1×, 2×, 4× its rate), then `quantbench plan` on the run.

One run (about 15 s) serves every test here: its stages are the trace's first 40 s at
speedup 12 (3.3 s, 1.7 s and 0.8 s). The simulator is slowed to two sequences at a time,
so 4× the trace's rate overloads it and its TTFT climbs there.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from quantbench.cli import main
from tests.loadtest.traces.helpers import EXAMPLES

pytestmark = pytest.mark.slow

TRACE = EXAMPLES / "synthetic_mooncake.jsonl"
SPEEDUP, WINDOW_S, STAGES = 12.0, 40.0, (1.0, 2.0, 4.0)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("replay")
    config = root / "bench.yaml"
    config.write_text(f"""
name: growth
targets:
  - name: sim
    sim: {{stack: vllm, quant: awq, speed: 10, max_num_seqs: 2}}
workload:
  endpoint: chat
  trace: {{file: {TRACE}, speedup: {SPEEDUP}, duration: {WINDOW_S}s}}
load: {{mode: replay, stages: {list(STAGES)}, warmup: 0s}}
analysis: {{max_schedule_lag_p99_ms: 1000}}
""")
    assert main(["run", str(config), "--out", str(root / "runs")]) == 0
    (found,) = (root / "runs").iterdir()
    return found


def _trace() -> pd.DataFrame:
    """The shipped trace as pandas reads it, with each row's offset in seconds."""
    trace = pd.read_json(TRACE, lines=True)
    trace["offset_s"] = (trace["timestamp"] - trace["timestamp"].min()) / 1000.0
    return trace


def _records(run_dir: Path) -> pd.DataFrame:
    return pd.read_json(run_dir / "requests.jsonl", lines=True)


def _stages(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "stages.jsonl").read_text().splitlines()]


def test_each_stage_sends_every_trace_request_at_its_time_with_its_lengths(run_dir: Path) -> None:
    """The journal's scheduled send time, from the stage's start, is the trace's timestamp
    ÷ speedup ÷ the stage's rate multiplier, within 1 ms."""
    trace = _trace()
    expected_rows = set(trace.index[trace["offset_s"] < WINDOW_S])
    records = _records(run_dir)
    stages = _stages(run_dir)
    assert [s["load"] for s in stages] == list(STAGES)
    for stage in stages:
        sent = records[records["stage"] == stage["stage"]]
        assert sorted(sent["trace_row"]) == sorted(expected_rows), "each row once per stage"
        assert (sent["outcome"] == "ok").all()
        rows = trace.loc[sent["trace_row"]]
        # A session's turn waits for its previous turn's answer (a conversation cannot go on
        # before it): then it is scheduled when that answer has ended, never earlier.
        scheduled_s = (sent["scheduled_ns"].to_numpy() - stage["start_ns"]) / 1e9
        wanted_s = rows["offset_s"].to_numpy() / SPEEDUP / stage["load"]
        on_time = abs(scheduled_s - wanted_s) < 1e-3
        assert on_time.mean() > 0.8, "most requests are sent at their trace time"
        by_turn = sent.set_index(["session", "turn"])
        for position in (~on_time).nonzero()[0]:
            late = sent.iloc[position]
            previous = by_turn.loc[(late["session"], late["turn"] - 1)]
            previous_end_s = (previous["end_ns"] - stage["start_ns"]) / 1e9
            assert wanted_s[position] < previous_end_s <= scheduled_s[position]
        # The server's own counts (usage): the trace's lengths, request by request (over the
        # chat API each prompt leaves room for the tokens the server's chat template adds).
        assert (sent["prompt_tokens"].to_numpy() == rows["input_length"].to_numpy()).all()
        assert (sent["output_tokens"].to_numpy() == rows["output_length"].to_numpy()).all()


def test_the_servers_prefix_cache_hits_are_reported_per_stage(run_dir: Path) -> None:
    server = pd.read_csv(run_dir / "server_stages.csv")
    rates = server.set_index("stage")["prefix_cache_hit_rate"]
    assert list(rates.index) == [0, 1, 2]
    # Scraped every second: the 0.8 s stage at 4× has too few scrapes for server figures.
    rates = rates.dropna()
    assert list(rates.index)[:2] == [0, 1], rates
    # The trace shares system prompts and session history: a good share of every stage's
    # prompt tokens are found cached; each stage's blocks are its own, so a later stage does
    # not find the previous stage's whole prompts cached (that would approach 100%).
    assert (rates > 0.2).all() and (rates < 0.9).all(), rates.tolist()
    # What the trace says an unbounded cache would reuse (trace.json, `trace describe`):
    # the server's cache, in its own 16-token blocks, finds about that.
    described = json.loads((run_dir / "trace.json").read_text())
    reusable = described["prefix"]["reused_token_share"]
    assert abs(rates - reusable).max() < 0.1, (rates.tolist(), reusable)
    hits = (server["prefix_cache_hits"] / server["prefix_cache_queries"])[rates.index]
    assert rates.to_numpy() == pytest.approx(hits.to_numpy(), abs=1e-4)  # CSV rounding
    report = (run_dir / "report.md").read_text()
    assert "prefix-cache hits" in report
    assert "## The replayed trace" in report and f"{100 * reusable:.1f}% of prompt tokens" in report
    assert f"{100 * hits[0]:.1f}%" in report  # from the unrounded counts


def test_plan_names_the_growth_stage_where_the_slo_breaks(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An SLO between the 1× stage's TTFT p95 and the worst later stage's: the plan names
    the first growth stage past it (4× on a quiet machine, where the slowed simulator's
    queue builds; a busy host may slow 2× as much), and interpolates the capacity below it."""
    summary = pd.read_csv(run_dir / "summary.csv").set_index("load")
    p95 = summary["ttft_p95_ms"]
    assert p95[4.0] > p95[1.0], "4× the trace's rate overloads the slowed simulator"
    limit_ms = round((p95[1.0] + max(p95[2.0], p95[4.0])) / 2)
    breaks = next(m for m in STAGES[1:] if p95[m] > limit_ms)
    capsys.readouterr()
    assert main(["plan", str(run_dir), "--slo", f"ttft_p95={limit_ms}ms"]) == 0
    out = capsys.readouterr().out
    plan = json.loads((run_dir / "plan.json").read_text())
    (target,) = plan["targets"]
    capacity = target["capacity"]
    named = f"TTFT p95 > {limit_ms} ms at {breaks:g}× the trace's rate"
    assert capacity["limited_by"].startswith(named), (capacity, p95.to_dict())
    assert breaks / 2 <= capacity["load"] <= breaks
    assert capacity["limited_by"] in out  # the plan's table names it

    # "How many GPUs for this traffic grown 3×": the trace's own rate (before speedup) × 3.
    assert main(["plan", str(run_dir), "--slo", f"ttft_p95={limit_ms}ms", "--growth", "3"]) == 0
    plan = json.loads((run_dir / "plan.json").read_text())
    described = json.loads((run_dir / "trace.json").read_text())
    peak = 3 * described["mean_rate_per_s"] / SPEEDUP
    assert plan["inputs"]["growth"] == 3 and plan["inputs"]["peak_rps"] == pytest.approx(peak)
    (target,) = plan["targets"]
    assert target["replicas"] == math.ceil(peak / (target["max_rps_per_replica"] * 0.8))
    assert "the replayed trace's traffic grown 3×" in capsys.readouterr().out
