"""README's "Locust by hand": the locustfile under plain Locust leaves a run directory that
`quantbench report` and `plan` accept, binds to loopback, and documents its flags."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import psutil
import pytest

from quantbench.cli import main
from tests.procs import REPO_ROOT, start_sim, stop_sim

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sim_url() -> Iterator[str]:
    proc, url = start_sim("--timing", "fixed", "--ttft-ms", "5", "--itl-ms", "1", "--port", "0")
    yield url
    stop_sim(proc)


def free_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return str(probe.getsockname()[1])


def locust(*args: str) -> list[str]:
    return [sys.executable, "-m", "locust", "-f", "loadtest/locustfile.py", "--headless", *args]


def test_readme_example_ends_with_report_and_plan(
    sim_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "manual"
    # README: --qb-stages 1,4,16 --qb-stage-duration 30s --qb-warmup 5s --qb-run-dir ...,
    # shortened.
    result = subprocess.run(
        locust("--host", sim_url, "--qb-stages", "1,4", "--qb-stage-duration", "1.5s",
               "--qb-warmup", "0.5s", "--qb-run-dir", str(run_dir), "--qb-output-tokens", "5",
               "--only-summary"),
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "TTFT" in result.stderr + result.stdout  # Locust's own table shows the LLM rows
    stages = [json.loads(line) for line in (run_dir / "stages.jsonl").read_text().splitlines()]
    assert [(s["stage"], s["load"], s["completed"]) for s in stages] == [(0, 1, True), (1, 4, True)]
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["source"] == "locust" and meta["ended_at"]
    assert meta["targets"][0]["model"] == "sim/llama-3.1-8b-instruct-awq"
    assert meta["config"]["load"]["stages"] == [1, 4]

    assert main(["report", str(run_dir)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(run_dir / "report.html")
    assert main(["plan", str(run_dir), "--peak-rps", "10"]) == 0
    assert (run_dir / "plan.md").exists()


def test_two_processes_bind_to_loopback_and_log_no_unknown_message(
    sim_url: str, tmp_path: Path
) -> None:
    port = free_port()
    proc = subprocess.Popen(
        locust("--processes", "2", "--master-bind-port", port, "--master-port", port,
               "--host", sim_url, "--qb-stages", "2", "--qb-stage-duration", "3s",
               "--qb-warmup", "0s", "--qb-run-dir", str(tmp_path / "run"),
               "--qb-output-tokens", "4", "--only-summary"),
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        master = psutil.Process(proc.pid)
        deadline = time.monotonic() + 30
        while not (listening := [
            c.laddr for c in master.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN
        ]):  # fmt: skip
            assert time.monotonic() < deadline, "the master never listened"
            time.sleep(0.05)
        assert {addr.ip for addr in listening} == {"127.0.0.1"}, listening
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output[-2000:]
    assert "Unknown message type" not in output
    assert main(["report", str(tmp_path / "run")]) == 0


def test_a_generator_whose_event_loop_is_held_has_its_stage_flagged(
    sim_url: str, tmp_path: Path
) -> None:
    """A greenlet that holds the loop (loaded from a test-only locustfile beside the real one)
    makes every stamp late; the stage must say so, not report the lateness as the server's."""
    run_dir = tmp_path / "busy"
    result = subprocess.run(
        [sys.executable, "-m", "locust", "-f",
         "loadtest/locustfile.py,tests/loadtest/busy_locustfile.py", "--headless",
         "--host", sim_url, "--qb-stages", "2", "--qb-stage-duration", "2.5s",
         "--qb-warmup", "0.5s", "--qb-min-samples", "5", "--qb-run-dir", str(run_dir),
         "--qb-output-tokens", "4", "--only-summary"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    samples = [json.loads(x) for x in (run_dir / "generator.jsonl").read_text().splitlines()]
    assert max(max(s["loop_late_ms"], default=0) for s in samples) >= 30
    assert main(["report", str(run_dir)]) == 0
    summary = pd.read_csv(run_dir / "summary.csv")
    assert summary.loc[0, "loop_lag_p99_ms"] >= 30
    assert "load generator's own work held its event loop" in summary.loc[0, "invalid_reason"]


def test_the_qb_flags_are_listed(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "loadtest/locustfile.py", "--help"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for flag in ("--qb-stages", "--qb-run-dir", "--qb-settings", "--qb-api-key-env",
                 "--qb-allow-overload", "--qb-exporter-port"):  # fmt: skip
        assert flag in result.stdout, flag


def test_a_key_is_sent_to_model_discovery_too(tmp_path: Path) -> None:
    env = {**os.environ, "QB_HAND_KEY": "sk-by-hand-0123456789"}
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.quantbench.misbehaving_server", "--key-env", "QB_HAND_KEY"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        url = server.stdout.readline().split()[-1]
        result = subprocess.run(
            locust("--host", url, "--qb-stages", "1", "--qb-stage-duration", "1s",
                   "--qb-warmup", "0s", "--qb-run-dir", str(tmp_path / "run"),
                   "--qb-api-key-env", "QB_HAND_KEY", "--only-summary"),
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, env=env,
        )  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = (tmp_path / "run" / "requests.jsonl").read_text().splitlines()
    assert lines and all(json.loads(line)["outcome"] == "ok" for line in lines)


def test_a_bad_flag_is_one_line_and_exit_2(sim_url: str, tmp_path: Path) -> None:
    result = subprocess.run(
        locust("--host", sim_url, "--qb-stages", "1e9", "--qb-run-dir", str(tmp_path / "run")),
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert "more than half of this host's available memory" in result.stderr
