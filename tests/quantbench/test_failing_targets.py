"""Targets that fail: refused workloads, dead ports, wrong keys, HTML pages and servers that
echo the key. Each ends as one line in the server's words and exit 2; the key is nowhere."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from quantbench.cli import main
from tests.procs import REPO_ROOT, start_sim, stop_sim, written_rows

pytestmark = pytest.mark.slow

CANARY = "sk-canary-7d1e0b9f4a"
SERVER = "tests.quantbench.misbehaving_server"


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def write_config(tmp_path: Path, target: str, load: str = "{stages: [2], stage_duration: 2s, "
                 "warmup: 0.5s}", extra: str = "") -> Path:  # fmt: skip
    config = tmp_path / "bench.yaml"
    config.write_text(
        f"name: failing\ntargets:\n  - {target}\n"
        f"workload: {{prompt_tokens: 8, output_tokens: 4}}\nload: {load}\n{extra}"
    )
    return config


def records(run_dir: Path) -> list[dict[str, Any]]:
    return written_rows(run_dir / "requests.jsonl")


def test_a_workload_the_target_rejects_fails_before_the_sweep_in_its_words(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bench.yaml"
    config.write_text(
        "name: long\ntargets:\n"
        "  - {name: sim, sim: {timing: fixed, ttft_ms: 5, itl_ms: 1, max_model_len: 64}}\n"
        "workload: {prompt_tokens: 100, output_tokens: 8}\n"
        "load: {stages: [2], stage_duration: 2s, warmup: 0s}\n"
    )
    assert main(["run", str(config), "--out", str(tmp_path / "runs")]) == 2
    line = one_error_line(capsys)
    assert line.startswith(
        "quantbench: error: target sim: refuses the workload's longest request (100 prompt + 8 "
        "output tokens): 400 http_error: This model's maximum context length is 64 tokens."
    ), line
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert records(run_dir) == [], "nothing was swept"


def test_a_target_that_dies_mid_run_is_stopped_not_hammered(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    proc, url = start_sim("--timing", "fixed", "--ttft-ms", "5", "--itl-ms", "1", "--port", "0")
    config = write_config(
        tmp_path,
        f"{{name: gone, url: '{url}', stack: vllm}}",
        "{stages: [2], stage_duration: 60s, warmup: 0s}",
        "timeouts: {down: 2s, connect: 1s}\n",
    )
    out = tmp_path / "runs"
    run = subprocess.Popen(
        [sys.executable, "-m", "quantbench", "run", str(config), "--out", str(out)],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (out.exists() and any(len(records(d)) > 20 for d in out.iterdir())):
            assert time.monotonic() < deadline and run.poll() is None, run.communicate()
            time.sleep(0.05)
        killed_at = time.monotonic()
        stop_sim(proc)
        _, err = run.communicate(timeout=60)
    finally:
        stop_sim(proc)
        if run.poll() is None:
            run.kill()
    assert run.returncode == 2, err
    assert time.monotonic() - killed_at < 30, "the run went on against a dead port"
    (line,) = err.strip().splitlines()
    assert line.startswith("quantbench: error: target gone: no valid stage: "), line
    assert "target gone: went down (only connection failures for " in line, line
    (run_dir,) = out.iterdir()
    failed = [r for r in records(run_dir) if r["outcome"] in ("connect_error", "timeout_connect")]
    # Two closed-loop users backing off from 50 ms to 1 s: a few dozen, not tens of thousands.
    assert 0 < len(failed) < 200, len(failed)
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["targets"][0]["stopped"].startswith("target gone: went down")


@pytest.fixture
def keyed_server(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("QB_CANARY_KEY", CANARY)
    proc, url = start_sim("--key-env", "QB_CANARY_KEY", "--echo-rate", "0.25", module=SERVER)
    yield url
    stop_sim(proc)


def test_a_canary_key_echoed_by_the_server_is_stored_and_printed_nowhere(
    keyed_server: str, tmp_path: Path
) -> None:
    """No `model:` either: /v1/models must carry the key too (it answers 401 without)."""
    config = write_config(tmp_path, f"{{name: keyed, url: '{keyed_server}', "
                          "api_key_env: QB_CANARY_KEY}")  # fmt: skip
    out = tmp_path / "runs"
    result = subprocess.run(
        [sys.executable, "-m", "quantbench", "run", str(config), "--out", str(out)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "QB_CANARY_KEY": CANARY},
    )  # fmt: skip
    # A quarter of the requests fail (503): the stage is invalid and the run says why.
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "target keyed: no valid stage: " in line, line
    (run_dir,) = out.iterdir()
    got = records(run_dir)
    echoed = [r for r in got if r["http_status"] == 503]
    assert echoed and all("Authorization: Bearer [redacted]" in str(r["error"]) for r in echoed)
    assert any(r["outcome"] == "ok" for r in got)
    leaks = [
        str(path.relative_to(run_dir))
        for path in run_dir.rglob("*")
        if path.is_file() and CANARY.encode() in path.read_bytes()
    ]
    assert leaks == [], f"the key is in {leaks}"
    assert CANARY not in result.stdout + result.stderr
    failures_csv = (run_dir / "locust" / "keyed_failures.csv").read_text()
    assert "Bearer [redacted]" in failures_csv  # Locust's own failure table, redacted


def test_a_wrong_key_is_one_line_in_the_servers_words(
    keyed_server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("QB_WRONG_KEY", "sk-not-the-one")
    config = write_config(
        tmp_path, f"{{name: k, url: '{keyed_server}', api_key_env: QB_WRONG_KEY}}"
    )
    assert main(["run", str(config), "--out", str(tmp_path / "runs")]) == 2
    line = one_error_line(capsys)
    assert line.startswith(
        f"quantbench: error: target k: no `model:` in the config and GET {keyed_server}/v1/models: "
        "HTTP 401: Invalid API key: pass your key as a Bearer token (set the target's `model:`"
    ), line
    config = write_config(
        tmp_path, f"{{name: k, url: '{keyed_server}', api_key_env: QB_WRONG_KEY, model: x}}"
    )
    assert main(["run", str(config), "--out", str(tmp_path / "runs")]) == 2
    assert one_error_line(capsys).startswith(
        "quantbench: error: target k: refuses a probe generation: 401 http_error: Invalid API key"
    )


def test_an_html_error_page_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    proc, url = start_sim("--html", module=SERVER)
    try:
        config = write_config(tmp_path, f"{{name: web, url: '{url}', model: m}}")
        assert main(["run", str(config), "--out", str(tmp_path / "runs")]) == 2
    finally:
        stop_sim(proc)
    line = one_error_line(capsys)
    assert line.startswith(
        "quantbench: error: target web: refuses a probe generation: 404 http_error: 404 Not Found;"
    ), line
    assert "<" not in line


def test_a_run_that_measures_no_target_keeps_why_and_report_says_so_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as sock:  # a port nothing listens on: bound, never listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = write_config(
            tmp_path,
            f"{{name: gone, url: 'http://127.0.0.1:{port}', stack: vllm, model: m}}",
            extra="timeouts: {ready: 1s}\n",
        )
        assert main(["run", str(config), "--out", str(tmp_path / "runs")]) == 2
    line = one_error_line(capsys)
    (run_dir,) = (tmp_path / "runs").iterdir()
    why = f"target gone: http://127.0.0.1:{port} did not complete a probe generation within 1 s"
    assert line.startswith(f"quantbench: error: {why}"), line
    assert line.endswith(
        f"no target was measured: {run_dir} keeps only run.json, with the reason "
        f"(`quantbench run --resume {run_dir}` once it is fixed, or delete it)"
    ), line
    assert sorted(p.name for p in run_dir.iterdir() if not p.name.startswith(".")) == ["run.json"]
    (target,) = json.loads((run_dir / "run.json").read_text())["targets"]
    assert target["stopped"].startswith(why), target

    assert main(["report", str(run_dir)]) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"quantbench: error: {run_dir}: no target was measured: {why}"), line
    assert not (run_dir / "report.html").exists(), "no empty report of a run that measured nothing"
