"""A profile change moves the verdict: real simulators, real Locust, the whole pipeline twice.

alpha (an H100 profile) outruns beta (an A100 profile) until alpha's decode is slowed 3×;
then the headline and the capacity plan must name beta instead. The SLO holds medians: with
TTFTs of 20–50 ms, a busy 2-core host moves the p95 tails of two targets measured in turn by
more than the tie band, whatever they are (the pair tests use synthetic tails).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from quantbench.cli import main

pytestmark = pytest.mark.slow

CONFIG = """\
name: verdict
targets:
  - name: alpha
    sim: {{stack: vllm, quant: awq, gpu: h100, faults: {{slowdown: {slowdown}}}}}
  - name: beta
    sim: {{stack: vllm, quant: awq, gpu: a100}}
workload: {{endpoint: chat, prompt_tokens: 32, output_tokens: 32, seed: 1}}
load: {{stages: [4, 8], warmup: 0.5s, stage_duration: 1.5s}}
slo: {{ttft_ms: 1000, tpot_ms: 14, percentile: 50}}
"""
# Decode steps at 4 users: alpha ≈ 5.3 ms, beta ≈ 8.3 ms, alpha slowed 3× ≈ 16 ms; the 14 ms
# TPOT objective separates the slowed alpha from beta with margin for a busy machine.


def run_and_plan(tmp_path: Path, slowdown: float, capsys: pytest.CaptureFixture[str]) -> Path:
    config = tmp_path / f"bench-{slowdown:g}.yaml"
    config.write_text(CONFIG.format(slowdown=slowdown))
    out = tmp_path / f"runs-{slowdown:g}"
    assert main(["run", str(config), "--out", str(out)]) == 0
    run_dir = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert main(["plan", str(run_dir), "--peak-rps", "100", "--gpu-hour-cost", "2"]) == 0
    capsys.readouterr()
    return run_dir


def verdict(run_dir: Path) -> tuple[str, str]:
    """(the headline's first sentence, the plan's cheapest target)."""
    report = (run_dir / "report.md").read_text().splitlines()
    plan = json.loads((run_dir / "plan.json").read_text())
    return report[2], plan["cheapest"]


def test_slowing_one_target_moves_the_verdict_and_the_plan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    normal = run_and_plan(tmp_path, 1, capsys)
    first, cheapest = verdict(normal)
    # Both meet the SLO at both loads: the pair's intervals at equal load name the leader.
    assert first.startswith(
        "- **alpha** (vllm awq) *(simulated)* is faster than **beta** (vllm awq) *(simulated)* "
        "at equal load beyond noise"
    ), first
    assert cheapest == "alpha"

    slowed = run_and_plan(tmp_path, 3, capsys)
    first, cheapest = verdict(slowed)
    assert first.startswith("- **beta** (vllm awq) *(simulated)* sustains the most load"), first
    assert cheapest == "beta"
    report = (slowed / "report.md").read_text()
    assert "Never within the SLO at a valid stage: alpha." in report
    assert "slowdown 3×" in report  # the run metadata says which profile was changed
