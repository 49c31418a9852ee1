"""`run`'s exit codes as the README documents them (issue 12.4): a sweep whose top stage
breaks down is a normal result (0) with the invalid stage named at the end; --fail-on-slo
exits 1 when a target it names met the SLO at no valid stage; a run that cannot answer
exits 2 (tests/quantbench/test_stage_sampling.py, test_failing_targets.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from quantbench.cli import main

pytestmark = pytest.mark.slow


def write(tmp_path: Path, targets: str, load: str, slo: str) -> Path:
    config = tmp_path / "bench.yaml"
    config.write_text(
        f"name: codes\ntargets:\n{targets}"
        "workload: {endpoint: completions, prompt_tokens: 8, output_tokens: 4}\n"
        f"load: {load}\nslo: {slo}\n"
        "analysis: {max_generator_cpu_percent: 100, max_loop_lag_p99_ms: 100}\n"
    )
    return config


def test_a_sweep_whose_top_stage_breaks_down_exits_0_and_names_that_stage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # TGI refuses requests beyond 2 at once ("Model is overloaded"): at 6 users most fail.
    targets = (
        "  - name: tgi\n    api: tgi\n"
        "    sim: {stack: tgi, quant: awq, timing: fixed, ttft_ms: 20, itl_ms: 5,"
        " max_concurrent_requests: 2}\n"
    )
    config = write(tmp_path, targets, "{stages: [1, 6], warmup: 0.2s, stage_duration: 1s}",
                   "{ttft_ms: 2000, tpot_ms: 100}")  # fmt: skip
    assert main(["run", str(config), "--out", str(tmp_path / "runs"), "--fail-on-slo"]) == 0
    out = capsys.readouterr().out
    assert "Invalid stages" in out
    (line,) = [x for x in out.splitlines() if x.startswith("  tgi stage 2 (6 users): ")]
    assert "error rate" in line
    assert "Met the SLO at no valid stage" not in out


def test_fail_on_slo_exits_1_only_for_the_targets_it_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sim = "sim: {{timing: fixed, ttft_ms: {ttft}, itl_ms: 5}}"
    targets = (
        f"  - name: quick\n    {sim.format(ttft=5)}\n  - name: slow\n    {sim.format(ttft=80)}\n"
    )
    config = write(tmp_path, targets, "{stages: [2], warmup: 0.2s, stage_duration: 1s}",
                   "{ttft_ms: 40, tpot_ms: 100}")  # fmt: skip
    out_dir = tmp_path / "runs"
    assert main(["run", str(config), "--out", str(out_dir)]) == 0  # not asked: a result
    (run_dir,) = out_dir.iterdir()
    assert "Met the SLO at no valid stage: slow" in capsys.readouterr().out
    # A finished run resumed runs nothing again and applies the threshold asked for now.
    assert main(["run", "--resume", str(run_dir), "--fail-on-slo"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("quantbench: error: --fail-on-slo: slow met the SLO at no valid")
    assert main(["run", "--resume", str(run_dir), "--fail-on-slo=quick"]) == 0
    assert main(["run", "--resume", str(run_dir), "--fail-on-slo=nope"]) == 2
    assert "--fail-on-slo: nope: no such target (have: quick, slow)" in capsys.readouterr().err
