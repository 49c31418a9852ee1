"""The whole pipeline against real simulator processes and a real Locust process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.summary import SUMMARY_COLUMNS
from quantbench.cli import main
from tests.procs import start_sim, stop_sim

pytestmark = pytest.mark.slow

TTFT_MS, ITL_MS, OUTPUT_TOKENS = 50.0, 10.0, 20


@pytest.fixture(scope="module")
def fixed_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A simulator started separately, as a user would, with `quantbench sim` in fixed mode,
    logging what it did for each request (its own clock: the ground truth)."""
    log = tmp_path_factory.mktemp("sim") / "requests.jsonl"
    proc, url = start_sim(
        "--stack", "vllm", "--quant", "awq", "--port", "0",
        "--timing", "fixed", "--ttft-ms", str(TTFT_MS), "--itl-ms", str(ITL_MS),
        "--request-log", str(log), module="quantbench",
    )  # fmt: skip
    yield url, log
    stop_sim(proc)


def served(log: Path) -> dict[str, dict[str, float]]:
    """The simulator's own account per request id: when it really wrote the first token (its
    due time plus its own lateness, wall clock), its time per output token, and how long it
    took from the request's arrival to the last token."""
    out = {}
    for line in log.read_text().splitlines():
        entry = json.loads(line)
        late = entry["lateness_ms"]
        if not entry["request_id"] or not late:
            continue
        first = entry["first_token"] + late[0] / 1000
        last = entry["last_token"] + late[-1] / 1000
        tokens = entry["tokens_sent"]
        out[entry["request_id"]] = {
            "first_token_wall_s": first,
            "ttft_ms": (first - entry["arrival"]) * 1000,
            "tpot_ms": (last - first) * 1000 / (tokens - 1),
            "e2e_s": last - entry["arrival"],
        }
    return out


def run_dir_from(out: Path) -> Path:
    (run_dir,) = out.iterdir()
    return run_dir


def test_measured_latency_matches_the_simulators_ground_truth(
    fixed_sim: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The client's figures against what the simulator logged it did, request by request:
    on a busy machine the simulator itself runs late, and the client must see exactly that."""
    url, log = fixed_sim
    config = tmp_path / "bench.yaml"
    config.write_text(f"""
name: truth
targets:
  - name: fixed
    url: {url}
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
    assert row["valid"]

    records = [json.loads(line) for line in (run_dir / "requests.jsonl").read_text().splitlines()]
    assert all(r["outcome"] == "ok" and r["output_tokens"] == OUTPUT_TOKENS for r in records)
    truth = served(log)
    measured = [r for r in records if not r["warmup"]]
    assert all(r["request_id"] in truth for r in measured), "every request was served once"
    # The client saw each first token when the simulator wrote it (same host clock): its TTFT
    # holds exactly the simulator's lateness, whatever this busy machine made it.
    seen_late_ms = np.array([
        (r["wall_sent_s"] + (r["first_token_ns"] - r["sent_ns"]) / 1e9
         - truth[r["request_id"]]["first_token_wall_s"]) * 1000
        for r in measured
    ])  # fmt: skip
    assert -0.5 <= np.median(seen_late_ms) <= 2.0, np.median(seen_late_ms)
    got_ttft = np.array([r["ttft_ms"] for r in measured])
    served_ttft = np.array([truth[r["request_id"]]["ttft_ms"] for r in measured])
    assert np.median(got_ttft - served_ttft) >= -0.5, "never less than the server took"
    got_tpot = np.array([r["tpot_ms"] for r in measured])
    served_tpot = np.array([truth[r["request_id"]]["tpot_ms"] for r in measured])
    assert abs(np.median(got_tpot - served_tpot)) <= 2.0  # per request, as the server wrote
    assert row["ttft_p50_ms"] == pytest.approx(np.median(got_ttft), abs=0.01)
    # The simulator is never early: its configured times are a lower bound.
    assert row["ttft_p50_ms"] >= TTFT_MS - 0.5 and row["tpot_p50_ms"] >= ITL_MS - 0.5
    # 8 closed-loop users, each request lasting what the simulator took to serve it.
    mean_e2e_s = np.mean([truth[r["request_id"]]["e2e_s"] for r in measured])
    assert row["req_per_s"] == pytest.approx(8 / mean_e2e_s, rel=0.1)
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
