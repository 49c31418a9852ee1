"""`load.mode: sweep` end to end: one user, the saturated throughput, then open-loop rates
spaced between the two rates measured — every one a normal stage of the run directory."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from quantbench.cli import main
from quantbench.sweep_run import sweep_rates

pytestmark = pytest.mark.slow


def test_the_rates_run_evenly_from_one_user_s_rate_to_the_saturated_one() -> None:
    assert sweep_rates(2.0, 10.0, 4) == [4.0, 6.0, 8.0, 10.0]  # guidellm's linspace[1:]
    assert sweep_rates(5.0, 5.0, 2) == [5.0, 5.0]


def test_a_sweep_runs_one_user_then_saturation_then_rates_between(tmp_path: Path) -> None:
    config = tmp_path / "bench.yaml"
    # Each request takes at least 20 + 3 × 2 = 26 ms of the simulator's own time.
    config.write_text(
        "name: sweep\ntargets:\n"
        "  - name: sim\n    sim: {timing: fixed, ttft_ms: 20, itl_ms: 2}\n"
        "workload: {endpoint: completions, prompt_tokens: 8, output_tokens: 4}\n"
        "load: {mode: sweep, warmup: 0.2s, stage_duration: 0.8s, sweep: {rates: 3,"
        " max_concurrency: 8}}\n"
        "analysis: {max_generator_cpu_percent: 100, max_loop_lag_p99_ms: 1000,\n"
        "           max_schedule_lag_p99_ms: 1000}\n"  # a busy test machine voids nothing
    )
    out = tmp_path / "runs"
    assert main(["run", str(config), "--out", str(out)]) == 0
    (run_dir,) = out.iterdir()
    stages = [json.loads(x) for x in (run_dir / "stages.jsonl").read_text().splitlines()]
    assert [s["stage"] for s in stages] == [0, 1, 2, 3, 4]
    assert [s["mode"] for s in stages] == ["concurrency"] * 2 + ["rate"] * 3
    assert [s["load"] for s in stages[:2]] == [1, 8]
    summary = pd.read_csv(run_dir / "summary.csv")
    one, many = summary["req_per_s"].iloc[0], summary["req_per_s"].iloc[1]
    assert one <= 1000 / 26  # one user waits for each answer: the simulator's own time
    rates = [s["load"] for s in stages[2:]]
    step = (rates[-1] - one) / 3
    assert rates == pytest.approx([one + step, one + 2 * step, one + 3 * step], rel=0.1)
    assert rates[-1] == pytest.approx(many, rel=0.1)  # the last rate is the saturated one
    (target,) = json.loads((run_dir / "result.json").read_text())["targets"]
    capacity = target["capacity"]  # read from the open-loop stages, never the users
    assert capacity["mode"] == "rate" and capacity["load"] == pytest.approx(rates[-1])
    # users and req/s share the report's load column: each cell says which it is
    report = (run_dir / "report.md").read_text()
    assert "| 1 user |" in report and "| 8 users |" in report
    assert len(re.findall(r"^\| [\d.]+ req/s offered \|", report, re.MULTILINE)) == 3
    highest = report.split("## Highest load within the SLO")[1].split("\n## ")[0]
    assert re.search(r"\| [≈≥]? ?[\d.,]+ req/s offered", highest), highest
