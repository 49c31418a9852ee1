"""`quantbench plan`: flags to a plan, plan.json/plan.md, the report's plan section, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from quantbench.cli import main
from tests.analysis.helpers import FakeTarget, write_run

SLO = "ttft_p95=500ms,tpot_p95=50ms"


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    # "fast" completes twice the requests per user as "slow", with lower latency.
    targets = [
        FakeTarget("slow", quant="gptq", ttft_ms=80.0, rate_per_user=6.0),
        FakeTarget("fast", quant="awq", ttft_ms=50.0, rate_per_user=12.0),
    ]
    return write_run(tmp_path, targets, loads=(1, 4, 16, 32))


def test_plan_prints_writes_and_is_kept_by_later_reports(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["plan", str(run_dir), "--slo", SLO, "--peak-rps", "40", "--gpu-hour-cost", "2.5"]
    assert main(args) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == str(run_dir / "plan.md")
    assert any(line.startswith("| fast (vllm awq) *(simulated)* ← cheapest |") for line in out)

    plan = json.loads((run_dir / "plan.json").read_text())
    assert plan["cheapest"] == "fast"
    assert plan["inputs"] == {
        "slo": {
            "ttft_ms": 500.0,
            "tpot_ms": 50.0,
            "e2e_ms": None,
            "percentile": 95.0,
            "ttft_percentile": 95.0,
            "tpot_percentile": 95.0,
            "e2e_percentile": None,
        },
        "peak_rps": 40.0,
        "gpu_hour_cost": 2.5,
        "headroom": 0.2,
        "kwh_cost": None,
        "max_ppl_increase": None,
        "source": "quantbench plan",
        "growth": None,
    }
    fast = next(t for t in plan["targets"] if t["target"] == "fast")
    rate, tokens = fast["max_rps_per_replica"], fast["output_tok_per_s_at_max"]
    assert fast["replicas"] == -(-40 // (rate * 0.8))  # ceil(peak / (rate × (1 − headroom)))
    assert fast["cost_per_million_output_tokens"] == pytest.approx(2.5 / (tokens * 3600) * 1e6)
    assert "# Capacity plan — test (simulated)" in (run_dir / "plan.md").read_text()

    report = (run_dir / "report.md").read_text()
    assert "## Capacity plan" in report and "peak: 40 req/s" in report
    assert main(["report", str(run_dir)]) == 0  # a later report keeps the plan's inputs
    assert "peak: 40 req/s" in (run_dir / "report.md").read_text()
    assert json.loads((run_dir / "plan.json").read_text())["inputs"]["peak_rps"] == 40.0


def test_without_slo_the_runs_own_slo_is_used(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plan", str(run_dir), "--headroom", "30%"]) == 0
    plan = json.loads((run_dir / "plan.json").read_text())
    slo = plan["inputs"]["slo"]
    assert (slo["ttft_ms"], slo["tpot_ms"], slo["e2e_ms"], slo["percentile"]) == (200, 30, None, 95)
    assert plan["inputs"]["headroom"] == pytest.approx(0.3)
    assert "GPUs for peak" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--growth", "3"], "replayed no trace (no trace.json); give --peak-rps instead"),
        (["--growth", "3", "--peak-rps", "4"], "--growth and --peak-rps both set the peak"),
        (["--growth", "0"], "--growth: 0 is not above 0"),
    ],
)
def test_growth_needs_a_replay_run_and_no_peak(
    run_dir: Path, capsys: pytest.CaptureFixture[str], flags: list[str], expected: str
) -> None:
    assert main(["plan", str(run_dir), *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err
    assert not (run_dir / "plan.json").exists()


def test_no_target_within_the_slo_exits_1(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plan", str(run_dir), "--slo", "ttft_p95=1ms"]) == 1
    assert "No target meets the SLO" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--slo", "ttft=500ms"], "--slo: unknown objective 'ttft'"),
        (["--slo", "ttft_p95=-5ms"], "--slo: ttft_p95='-5ms' is not a positive duration"),
        (["--slo", "ttft_p95"], "--slo: 'ttft_p95' is not KEY=VALUE"),
        (["--peak-rps", "-40"], "--peak-rps: '-40' is not a number ≥ 0"),
        (["--peak-rps", "lots"], "--peak-rps: 'lots' is not a number ≥ 0"),
        (["--peak-rps", "0"], "--peak-rps: input should be greater than 0"),
        (["--gpu-hour-cost", "-2.5"], "--gpu-hour-cost: '-2.5' is not a number ≥ 0 such as 2.5"),
        (["--kwh-cost", "$0.15"], "--kwh-cost: '$0.15' is not a number ≥ 0 such as 0.15"),
        (["--headroom", "1"], "--headroom: input should be less than 1"),
        (["--headroom", "150%"], "--headroom: input should be less than 1"),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(
    run_dir: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    assert main(["plan", str(run_dir), *flags]) == 2
    captured = capsys.readouterr()
    (line,) = captured.err.strip().splitlines()
    assert line.startswith(f"quantbench: error: {message}"), line
    assert not (run_dir / "plan.json").exists()


def test_not_a_run_directory_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(tmp_path / "nowhere"), "--peak-rps", "40"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("quantbench: error: ") and "not found; is " in line


def test_help_explains_every_flag_with_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["plan", "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--slo", "--peak-rps", "--gpu-hour-cost", "--headroom", "run_dir"):
        assert flag in text
    assert "quantbench plan runs/RUN --slo ttft_p95=500ms,tpot_p95=50ms --peak-rps 40" in text


def test_an_objective_at_another_percentile(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plan", str(run_dir), "--slo", "ttft_p99=0.3s,tpot_p50=40ms"]) == 0
    out = capsys.readouterr().out
    assert "SLO: TTFT p99 ≤ 300 ms, TPOT p50 ≤ 40 ms (p95, valid stages)" not in out
    assert "TTFT p99 ≤ 300 ms, TPOT p50 ≤ 40 ms" in out
    summary = (run_dir / "summary.csv").read_text().splitlines()[0].split(",")
    assert "ttft_p99_ms" in summary and "tpot_p50_ms" in summary


def test_no_target_with_a_valid_stage_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    thin = write_run(tmp_path, [FakeTarget("thin", rate_per_user=0.5)], loads=(1, 4))
    assert main(["plan", str(thin), "--peak-rps", "10"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("quantbench: error: no target has a valid stage")


def test_a_kwh_price_on_a_run_without_gpu_figures_is_said_not_dropped(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert not (run_dir / "gpu.jsonl").exists()
    assert main(["plan", str(run_dir), "--slo", SLO, "--kwh-cost", "0.15"]) == 0
    text = (run_dir / "plan.md").read_text()
    assert "No energy cost at $0.15 per kWh: no target has GPU power at its SLO limit" in text
    assert "No energy cost at $0.15" in capsys.readouterr().out
