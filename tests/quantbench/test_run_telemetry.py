"""GPU and container telemetry through `quantbench run`, end to end.

Simulated targets: each simulator's own simulated exporter page is sampled into gpu.jsonl and
becomes per-stage power, energy and J/token in summary.csv, result.json, the report (read in
Chromium) and the plan's energy cost. A compose target (Docker replaced by the fake CLI of
test_compose.py, the Engine API by the fake Engine on a unix socket that the real `docker` SDK
talks to): its container facts land in run.json, a restart or an OOM kill during a stage
invalidates that stage with the reason, and the last log lines of a container that changed or
failed to come up land in logs/, redacted, with the error pointing there.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from quantbench.cli import main
from tests.analysis.browser import load_page
from tests.procs import REPO_ROOT
from tests.quantbench.docker_fakes import FakeContainer, FakeEngine, container_json, stats_json

pytestmark = pytest.mark.slow

API_KEY = "sk-qb-telemetry-test-7f3e"
HF_TOKEN = "hf_" + "Ab1" * 12
CID = "9d2e4f" + "0" * 58
IMAGE_ID = "sha256:" + "c" * 64  # what the fake `docker compose images` says (conftest.py)
DIGEST = "vllm/vllm-openai@sha256:" + "d" * 64  # and its `docker image inspect`


# ------------------------------------------------------------------ simulated targets
def test_simulated_targets_get_power_energy_and_j_per_token_everywhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bench.yaml"
    config.write_text(
        "name: energy\ntargets:\n"
        "  - {name: awq, sim: {stack: vllm, quant: awq, gpu: h100}}\n"
        "  - {name: fp16, sim: {stack: vllm, quant: fp16, gpu: h100}}\n"
        "workload: {prompt_tokens: 64, output_tokens: 16}\n"
        "load: {stages: [4, 16], warmup: 0.5s, stage_duration: 3s}\n"
        "telemetry: {interval: 0.25s}\n"
    )
    assert main(["run", str(config), "--out", str(tmp_path / "runs")]) == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    printed = capsys.readouterr().out
    assert printed.count("  GPU figures: simulated-dcgm every 0.25 s (1 GPU(s) seen") == 2
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["schema_version"] == 2
    for target in meta["targets"]:
        telemetry = target["telemetry"]
        assert telemetry["source"] == "simulated-dcgm" and telemetry["samples"] >= 8
        assert telemetry["url"].endswith("/dcgm/metrics") and "simulated" in telemetry["note"]
    summary = pd.read_csv(run_dir / "summary.csv")
    assert (summary["gpu_source"] == "simulated-dcgm").all()
    assert (summary["gpu_energy_method"] == "counter").all()
    assert summary["gpu_mean_power_w"].between(80, 700).all()
    joules = summary.set_index(["target", "load"])["gpu_j_per_output_token"]
    assert joules[("awq", 4.0)] < joules[("fp16", 4.0)], "4-bit decode: fewer joules per token"
    assert (summary["gpu_memory_used_mib"] > 0).all()
    assert summary.groupby("target")["gpu_memory_used_mib"].max()["fp16"] > 15000
    result = json.loads((run_dir / "result.json").read_text())
    first = result["stages"][0]["telemetry"]
    assert first["source"] == "simulated-dcgm" and first["j_per_output_token"] > 0

    assert main(["plan", str(run_dir), "--kwh-cost", "0.15", "--gpu-hour-cost", "2.5"]) == 0
    plan = json.loads((run_dir / "plan.json").read_text())
    energy = {t["target"]: t["energy"] for t in plan["targets"]}
    for name, figures in energy.items():
        assert figures is not None, name
        cost = figures["j_per_output_token"] * 1e6 / 3.6e6 * 0.15
        assert figures["energy_cost_per_million_output_tokens"] == pytest.approx(cost)
    assert "energy $ per M out tok" in (run_dir / "plan.md").read_text()

    page = load_page(run_dir / "report.html", tmp_path / "chromium")
    assert "GPU power and energy (simulated)" in page.headings
    chart = dict(page.images)
    assert chart.get("GPU power and energy per output token — simulated") is True
    report = (run_dir / "report.md").read_text()
    assert "| users | target | source | mean W |" in report
    assert "Energy at the SLO limit" in report


# ------------------------------------------------------------------ compose targets
@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeEngine]:
    with tempfile.TemporaryDirectory(prefix="qb-docker-") as directory:
        fake = FakeEngine(Path(directory) / "docker.sock")
        fake.images[IMAGE_ID] = {"Id": IMAGE_ID, "RepoTags": ["vllm/vllm-openai:v0.33.0"],
                                 "RepoDigests": [DIGEST]}  # fmt: skip
        inspect = container_json(
            CID, "vllm-awq", image="vllm/vllm-openai:v0.33.0", image_id=IMAGE_ID
        )
        fake.containers[CID] = FakeContainer(
            inspect,
            stats_json(CID, cpu_ns=5 * 10**9, usage=6 * 1024**3, limit=64 * 1024**3),
            [
                (1, b"INFO: loading weights"),
                (2, f"WARNING: request with Authorization: Bearer {API_KEY}".encode()),
                (2, f"ERROR: login with token {HF_TOKEN} and key={API_KEY} failed".encode()),
                (2, b"torch.OutOfMemoryError: CUDA out of memory"),
            ],
        )
        fake.start()
        monkeypatch.setenv("DOCKER_HOST", fake.base_url)
        try:
            yield fake
        finally:
            fake.stop()


@pytest.fixture
def docker_env(fake_docker: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The fake `docker` CLI (conftest.py), with a log line and an API key to redact."""
    monkeypatch.setenv("FAKE_OUT_LOGS", "torch.OutOfMemoryError: CUDA out of memory\n")
    monkeypatch.setenv("QB_TEST_KEY", API_KEY)
    return tmp_path


def _bench(tmp_path: Path) -> Path:
    config = tmp_path / "bench.yaml"
    config.write_text(
        f"name: gpu\ncompose_file: {REPO_ROOT / 'docker-compose.yml'}\n"
        "targets:\n  - {name: awq, compose: vllm-awq, stack: vllm, quant: awq, "
        "api_key_env: QB_TEST_KEY}\n"
        "workload: {prompt_tokens: 8, output_tokens: 4}\n"
        "load: {stages: [2, 2], warmup: 0.5s, stage_duration: 1.5s}\n"
        "telemetry: {interval: 0.2s}\n"
        "analysis: {min_samples_p95: 5}\n"
    )
    return config


def _now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"


def _restart(inspect: dict[str, Any]) -> None:
    inspect["RestartCount"] = 1
    inspect["State"]["StartedAt"] = _now_rfc3339()


def _oom_kill(inspect: dict[str, Any]) -> None:
    inspect["State"].update(OOMKilled=True, Status="exited", Running=False, ExitCode=137)


def _during_stage_1(
    runs: Path, engine: FakeEngine, change: Callable[[dict[str, Any]], None]
) -> None:
    """Once the second stage's measured requests arrive, change the container's state."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for requests in runs.glob("*/requests.jsonl"):
            for line in requests.read_text().splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if record.get("stage") == 1 and not record.get("warmup"):
                    change(engine.containers[CID].inspect)
                    return
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("change", "reason"),
    [(_restart, "restarted (restart count 0 -> 1)"), (_oom_kill, "was OOM-killed")],
    ids=["restarted", "oom-killed"],
)
def test_a_container_that_restarts_or_is_oom_killed_invalidates_its_stage(
    change: Callable[[dict[str, Any]], None], reason: str, docker_env: Path, engine: FakeEngine
) -> None:
    runs = docker_env / "runs"
    runs.mkdir()
    thread = threading.Thread(target=_during_stage_1, args=(runs, engine, change), daemon=True)
    thread.start()
    assert main(["run", str(_bench(docker_env)), "--out", str(runs)]) == 0
    thread.join(timeout=10)
    (run_dir,) = runs.iterdir()
    summary = pd.read_csv(run_dir / "summary.csv").set_index("stage")
    assert bool(summary.loc[0, "valid"]), summary.loc[0, "invalid_reason"]
    assert not bool(summary.loc[1, "valid"])
    assert summary.loc[1, "invalid_reason"] == f"container quantbench-vllm-awq-1 {reason}"
    assert summary.loc[0, "container_memory_mib"] == pytest.approx(6 * 1024 - 512)
    meta = json.loads((run_dir / "run.json").read_text())
    container = meta["targets"][0]["container"]
    assert container["repo_digest"] == DIGEST and container["name"] == "quantbench-vllm-awq-1"
    assert container["project"] == "quantbench" and container["container_id"] == CID
    assert container["changed"] == f"container quantbench-vllm-awq-1 {reason}"
    assert container["logs"] == "logs/vllm-awq.log"
    logs = (run_dir / "logs" / "vllm-awq.log").read_text()
    assert "CUDA out of memory" in logs
    assert API_KEY not in logs and HF_TOKEN not in logs and "Bearer [redacted]" in logs
    samples = [json.loads(line) for line in (run_dir / "containers.jsonl").read_text().splitlines()]
    assert samples and all(s["target"] == "awq" and s["error"] is None for s in samples)


def test_a_container_that_fails_to_come_up_leaves_its_logs_and_the_error_points_there(
    docker_env: Path,
    engine: FakeEngine,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    state = engine.containers[CID].inspect["State"]
    state.update(Status="exited", Running=False, ExitCode=1)
    monkeypatch.setenv("FAKE_FAIL", "up")
    monkeypatch.setenv(
        "FAKE_STDERR",
        " Container quantbench-vllm-awq-1  Started\ncontainer quantbench-vllm-awq-1 exited (1)\n",
    )
    runs = docker_env / "runs"
    assert main(["run", str(_bench(docker_env)), "--out", str(runs)]) == 2
    (run_dir,) = runs.iterdir()
    log = run_dir / "logs" / "vllm-awq.log"
    line = capsys.readouterr().err.strip()
    assert line.count("\n") == 0 and line.startswith("quantbench: error: target awq")
    assert f"(its last 200 log lines: {log})" in line, line
    text = log.read_text()
    assert "torch.OutOfMemoryError: CUDA out of memory" in text
    assert API_KEY not in text and HF_TOKEN not in text
