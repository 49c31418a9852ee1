"""The whole pipeline against real simulator processes and a real Locust process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from analysis.summary import SUMMARY_COLUMNS
from quantbench.cli import main
from tests.procs import start_sim, stop_sim

pytestmark = pytest.mark.slow

TTFT_MS, ITL_MS, OUTPUT_TOKENS = 50.0, 10.0, 20


@pytest.fixture(scope="module")
def fixed_sim() -> Iterator[str]:
    """A simulator started separately, as a user would, with `quantbench sim` in fixed mode."""
    proc, url = start_sim(
        "--stack", "vllm", "--quant", "awq", "--port", "0",
        "--timing", "fixed", "--ttft-ms", str(TTFT_MS), "--itl-ms", str(ITL_MS),
        module="quantbench",
    )  # fmt: skip
    yield url
    stop_sim(proc)


def run_dir_from(out: Path) -> Path:
    (run_dir,) = out.iterdir()
    return run_dir


def test_measured_latency_matches_the_simulators_ground_truth(
    fixed_sim: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bench.yaml"
    config.write_text(f"""
name: truth
targets:
  - name: fixed
    url: {fixed_sim}
    stack: vllm
    quant: awq
workload: {{endpoint: chat, prompt_tokens: 32, output_tokens: {OUTPUT_TOKENS}}}
load: {{stages: [8], warmup: 1s, stage_duration: 5s}}
""")
    assert main(["run", str(config), "--out", str(tmp_path / "runs")]) == 0
    run_dir = run_dir_from(tmp_path / "runs")
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(run_dir)

    summary = pd.read_csv(run_dir / "summary.csv")
    assert list(summary.columns) == SUMMARY_COLUMNS
    (row,) = summary.to_dict("records")
    assert row["load"] == 8 and row["errors"] == 0 and row["ok"] >= 100
    assert abs(row["ttft_p50_ms"] - TTFT_MS) <= 2.0, row
    assert abs(row["tpot_p50_ms"] - ITL_MS) <= 2.0, row
    # 8 closed-loop users, each request lasting TTFT + 19 ITL: the throughput that implies.
    expected_rps = 8 / ((TTFT_MS + (OUTPUT_TOKENS - 1) * ITL_MS) / 1000)
    assert row["req_per_s"] == pytest.approx(expected_rps, rel=0.1)
    assert row["valid"]

    records = [json.loads(line) for line in (run_dir / "requests.jsonl").read_text().splitlines()]
    assert all(r["outcome"] == "ok" and r["output_tokens"] == OUTPUT_TOKENS for r in records)
    assert len({r["user"] for r in records}) == 8
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["targets"][0]["server_info"]["version"] == {"version": "0.33.0"}
    assert meta["targets"][0]["simulated"] is False  # an external URL, even if it is a sim
    # The simulator's /tokenize counts one token per word: calibration finds exactly that.
    assert meta["targets"][0]["prompt_length"] == "calibrated"
    assert meta["targets"][0]["tokens_per_word"] == pytest.approx(1.0)
    for name in ("stages.jsonl", "requests.parquet", "report.md", "report.html"):
        assert (run_dir / name).stat().st_size > 0, name


def test_broken_config_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bench.yaml"
    config.write_text("targets:\n  - name: x\n    url: http://127.0.0.1:1\n    colour: red\n")
    assert main(["run", str(config), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    hint = "unknown key (check its spelling and indentation)"
    assert err == f"quantbench: error: {config}: targets[0].colour: {hint}"
    assert list(tmp_path.iterdir()) == [config]  # nothing started, no run directory


def test_unreachable_target_is_one_line_and_keeps_the_run_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bench.yaml"
    config.write_text(
        "targets:\n  - name: gone\n    url: http://127.0.0.1:9\n    model: m\n"
        "timeouts: {connect: 1s, ready: 1s}\n"
    )
    assert main(["run", str(config), "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "target gone" in err[0] and "connect_error" in err[0]
    assert (run_dir_from(tmp_path / "runs") / "run.json").exists()


def test_missing_api_key_is_one_line_and_starts_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("QB_ABSENT_KEY", raising=False)
    config = tmp_path / "bench.yaml"
    config.write_text(
        "targets:\n  - {name: k, url: 'http://127.0.0.1:9', api_key_env: QB_ABSENT_KEY}\n"
    )
    assert main(["run", str(config), "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "quantbench: error: target k: api_key_env: environment variable QB_ABSENT_KEY "
        "is not set (export it, or remove api_key_env)"
    )
    assert not (tmp_path / "runs").exists()
