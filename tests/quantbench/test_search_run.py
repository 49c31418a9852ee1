"""`load.mode: search` end to end against a simulator with a knee that follows from its
profile: the simulated ExLlamaV2 engine (services/sim/engine.py, `BatchingEngine`) runs at most
`max_num_seqs` = B sequences; each takes one prefill step and N − 1 decode steps, and a full
batch's step lasts `base + per_seq × B(N−1)/N + prefill × P × B/N` ms, so it completes at most
μ = 1 / (N·base/B + per_seq·(N−1) + prefill·P) requests per ms; offered more, its queue and
TTFT grow without bound.

What is checked here is the mechanism through real Locust runs: every probe is a normal stage,
each verdict is what its records say, the report and the plan show the answer. How close the
answer lands to μ depends on real time on this shared 2-core machine (a starved simulator
writes late, which a client cannot tell from queueing: on a quiet host it lands within ±3%;
under a full parallel suite it was once 18% low), so it is bounded loosely here; the exact
convergence is pinned on a simulated clock (test_search_steps.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from loadtest.slo_counts import Limit, judge
from quantbench.cli import main
from quantbench.search_run import stage_tally
from services.sim.profiles import load_profile

pytestmark = pytest.mark.slow

B, N, SPEED = 4, 16, 2.0


def knee_req_per_s(prompt_tokens: float) -> float:
    p = load_profile("exllamav2", "exl2", "h100")
    step_ms = N * p.decode_step_base_ms / B + p.decode_step_per_seq_ms * (N - 1)
    return SPEED * 1000.0 / (step_ms + p.prefill_ms_per_token * prompt_tokens)


def test_the_search_finds_the_rate_where_the_slo_breaks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bench.yaml"
    sim = {"stack": "exllamav2", "quant": "exl2", "gpu": "h100", "max_num_seqs": B,
           "speed": SPEED}  # fmt: skip
    config.write_text(
        "name: knee\ntargets:\n"
        f"  - name: sim\n    sim: {json.dumps(sim)}\n"
        f"workload: {{endpoint: completions, prompt_tokens: 32, output_tokens: {N}}}\n"
        "load: {mode: search, arrival: constant, warmup: 0.2s, stage_duration: 0.8s,\n"
        "       search: {start: 75, growth: 1.25, precision: 0.03}}\n"
        "slo: {ttft_ms: 25, tpot_ms: null}\n"
        "analysis: {max_generator_cpu_percent: 100, max_loop_lag_p99_ms: 1000,\n"
        "           max_schedule_lag_p99_ms: 1000}\n"  # a busy test machine voids nothing
    )
    out = tmp_path / "runs"
    assert main(["run", str(config), "--out", str(out)]) == 0
    (run_dir,) = out.iterdir()
    steps = [json.loads(x) for x in (run_dir / "search.jsonl").read_text().splitlines()]
    stages = [json.loads(x) for x in (run_dir / "stages.jsonl").read_text().splitlines()]
    # every probed stage is a normal rate stage of the run directory, in order
    assert [s["stage"] for s in steps] == [s["stage"] for s in stages] == list(range(len(steps)))
    assert [s["rate"] for s in steps] == [s["load"] for s in stages]
    assert all(s["mode"] == "rate" for s in stages)
    requests = pd.read_json(run_dir / "requests.jsonl", lines=True)
    knee = knee_req_per_s(float(requests["prompt_tokens"].mean()))
    low, high = steps[-1]["low"], steps[-1]["high"]
    answer = (low + high) / 2
    assert (high - low) / 2 <= 0.03 * answer
    assert 0.5 * knee <= answer <= 1.1 * knee, (answer, knee, steps)  # a busy host: lower
    limits = (Limit("ttft", 0.95, 25.0),)
    for step in steps:  # each verdict is the one its records give, as the generator judged
        tally, _ = stage_tally(run_dir, "sim", step["stage"], limits)
        assert step["verdict"] == judge(tally, limits, 0.01, early=step["early"]), step
    terminal = capsys.readouterr().out
    assert f"SLO limit {answer:.3g} ±" in terminal
    # the report shows the path and the answer; the verdict and the plan use the answer
    report = (run_dir / "report.md").read_text()
    assert "## SLO search" in report and f"{answer:.3g} ± " in report
    for step in steps:
        assert f"| {step['step'] + 1} | {step['stage']} | {step['rate']:.4g} |" in report
    assert main(["plan", str(run_dir), "--peak-rps", "500"]) == 0
    plan = json.loads((run_dir / "plan.json").read_text())
    (capacity,) = [t["capacity"] for t in plan["targets"]]
    assert capacity["status"] == "searched" and capacity["load"] == pytest.approx(answer)
