"""`quantbench run` with a `compose:` target, Docker replaced by the fake of test_compose.py.

The fake `docker compose port` answers with a simulator started here, so the whole path —
up --wait, the published URL, a real generation, the stages, run.json's image digest and
resolved flags, and the service removed afterwards — runs without a Docker engine.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from quantbench.cli import main
from tests.procs import REPO_ROOT
from tests.quantbench.test_compose import NO_GPU

pytestmark = pytest.mark.slow


def bench(tmp_path: Path) -> Path:
    config = tmp_path / "bench.yaml"
    config.write_text(
        f"name: gpu\ncompose_file: {REPO_ROOT / 'docker-compose.yml'}\n"
        "targets:\n  - {name: awq, compose: vllm-awq, stack: vllm, quant: awq}\n"
        "workload: {prompt_tokens: 8, output_tokens: 4}\n"
        "load: {stages: [2], warmup: 0.5s, stage_duration: 1.5s}\n"
    )
    return config


def test_compose_target_is_brought_up_measured_recorded_and_removed(
    fake_docker: Path, tmp_path: Path
) -> None:
    assert main(["run", str(bench(tmp_path)), "--out", str(tmp_path / "runs")]) == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    meta = json.loads((run_dir / "run.json").read_text())
    compose = meta["targets"][0]["compose"]
    assert compose["service"] == "vllm-awq"
    assert compose["image"]["repo_digest"] == "vllm/vllm-openai@sha256:" + "d" * 64
    assert compose["resolved"]["image"].startswith("vllm/vllm-openai:")
    assert meta["targets"][0]["server_info"]["version"] == {"version": "0.33.0"}
    assert "qb-secret-marker" not in (run_dir / "run.json").read_text()
    verbs = [json.loads(line) for line in fake_docker.read_text().splitlines()]
    assert any("up" in call and "--wait" in call for call in verbs)
    assert any("rm" in call for call in verbs)  # started here, so removed afterwards
    records = (run_dir / "requests.jsonl").read_text().splitlines()
    assert records and all(json.loads(r)["outcome"] == "ok" for r in records)


def test_no_gpu_is_one_line_naming_the_target(
    fake_docker: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setenv("FAKE_FAIL", "up")
    monkeypatch.setenv("FAKE_STDERR", NO_GPU)
    assert main(["run", str(bench(tmp_path)), "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "target awq" in err[0] and "vllm-awq" in err[0]
