"""Fixtures shared by the `quantbench run` tests with a `compose:` target: a simulator that
stands in for the service, and the fake `docker` CLI of test_compose.py pointing at it."""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.helpers import compose_binary, write_secret_files
from tests.procs import start_sim, stop_sim
from tests.quantbench.test_compose import FAKE_DOCKER


@pytest.fixture
def compose_sim_url() -> Iterator[str]:
    """The simulator that the fake `docker compose port` publishes as the service."""
    proc, url = start_sim("--timing", "fixed", "--ttft-ms", "5", "--itl-ms", "1", "--port", "0")
    yield url
    stop_sim(proc)


@pytest.fixture
def fake_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compose_sim_url: str) -> Path:
    """`docker` on PATH: the fake of test_compose.py (real `compose config`, canned answers:
    image sha256:c…, digest sha256:d…, the simulator as the published port). Returns the
    file where it logs each command line."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "docker"
    script.write_text(FAKE_DOCKER.format(python=sys.executable, compose=str(compose_binary())))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "docker.log"
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_LOG", str(log))
    for name, value in write_secret_files(tmp_path / "secrets", "qb-secret-marker").items():
        monkeypatch.setenv(name, value)
    image = {"ID": "sha256:" + "c" * 64, "ContainerName": "quantbench-vllm-awq-1",
             "Repository": "vllm/vllm-openai", "Tag": "v0.33.0"}  # fmt: skip
    monkeypatch.setenv("FAKE_OUT_IMAGES", json.dumps([image]))
    monkeypatch.setenv("FAKE_OUT_INSPECT", '["vllm/vllm-openai@sha256:' + "d" * 64 + '"]\n')
    monkeypatch.setenv("FAKE_OUT_PORT", compose_sim_url.removeprefix("http://") + "\n")
    monkeypatch.setenv("FAKE_OUT_PS", "")
    return log
