"""Which GPU source a target's stages are sampled from (`telemetry:`), with what run.json says
about it, and the nvidia-smi child that never outlives quantbench."""

from __future__ import annotations

import http.server
import os
import signal
import socketserver
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtest.gpu_records import GPU_FILE, read_gpu_samples
from loadtest.run_meta import TargetMeta
from quantbench import gpu_sampler
from quantbench.config import TargetConfig, TelemetryConfig
from quantbench.errors import ConfigError, HarnessError
from quantbench.gpu_sampler import NvmlBackend
from quantbench.telemetry import open_gpu_source, target_telemetry
from tests.procs import REPO_ROOT
from tests.quantbench.gpu_fakes import FakeGpu, FakeNvml, install_fake_nvidia_smi, path_with

PAGE = (REPO_ROOT / "tests/loadtest/data/dcgm_exporter_page.txt").read_bytes()


class _Exporter(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status, body = (200, PAGE) if self.path == "/metrics" else (404, b"not found")
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def exporter() -> Iterator[str]:
    """A dcgm-exporter stand-in serving the recorded page (three GPUs, one in MIG mode)."""
    server = socketserver.TCPServer(("127.0.0.1", 0), _Exporter)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/metrics"
    server.shutdown()
    server.server_close()


@pytest.fixture
def no_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """This host as it is: no NVIDIA driver; and no nvidia-smi on PATH."""
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))


def _target(**fields: object) -> TargetConfig:
    return TargetConfig.model_validate({"name": "t", **fields})


def test_dcgm_url_is_read_first_and_its_gpus_are_named(exporter: str, no_gpu: None) -> None:
    config = TelemetryConfig(dcgm_url=exporter)
    backend, meta = open_gpu_source(config, _target(url="http://10.0.0.7:8000"), "http://x")
    assert backend is not None and backend.name == "dcgm"
    assert meta.source == "dcgm" and meta.url == exporter and len(meta.gpus) == 2
    assert meta.gpus[0].startswith("0 NVIDIA H100 80GB HBM3 GPU-")


def test_auto_without_a_gpu_says_why_for_each_source(no_gpu: None) -> None:
    local = "http://127.0.0.1:8000"
    backend, meta = open_gpu_source(TelemetryConfig(), _target(url=local), local)
    assert backend is None and meta.source == "none"
    assert meta.note is not None
    assert "dcgm: no telemetry.dcgm_url" in meta.note
    assert "NVML:" in meta.note and "nvidia-smi:" in meta.note


def test_auto_never_samples_this_hosts_gpus_for_a_remote_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_fake_nvidia_smi(tmp_path / "bin")
    monkeypatch.setenv("PATH", path_with(tmp_path / "bin"))
    remote = _target(url="http://gpu-box.internal:8000")
    backend, meta = open_gpu_source(TelemetryConfig(), remote, "http://gpu-box.internal:8000")
    assert backend is None and meta.note is not None
    assert "is not on this host" in meta.note
    local = _target(url="http://127.0.0.1:8000")
    backend, meta = open_gpu_source(TelemetryConfig(), local, "http://127.0.0.1:8000")
    assert backend is not None and meta.source == "nvidia-smi"
    backend.close()


def test_a_named_source_that_cannot_be_read_is_one_error_line(no_gpu: None) -> None:
    config = TelemetryConfig(source="nvidia-smi")
    with pytest.raises(HarnessError, match=r"^target t: telemetry.source nvidia-smi: .*not found"):
        open_gpu_source(config, _target(url="http://127.0.0.1:8000"), "http://127.0.0.1:8000")


def test_source_dcgm_needs_its_url(tmp_path: Path) -> None:
    from quantbench.config import load_config

    path = tmp_path / "bench.yaml"
    path.write_text("targets: [{name: t, url: 'http://127.0.0.1:1'}]\ntelemetry: {source: dcgm}\n")
    with pytest.raises(ConfigError, match=r"bench.yaml: telemetry: source dcgm needs dcgm_url"):
        load_config(path)


def test_nvml_samples_the_targets_gpu_into_the_run_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_gpu: None
) -> None:
    gpus = [FakeGpu(uuid="GPU-a"), FakeGpu(uuid="GPU-b", power_mw=90_000)]
    monkeypatch.setitem(gpu_sampler.BACKENDS, "nvml", lambda: NvmlBackend(FakeNvml(gpus)))
    config = TelemetryConfig(interval=0.05, gpus=[1])
    target = _target(url="http://127.0.0.1:8000")
    info = TargetMeta(name="t")
    saves = []
    with target_telemetry(
        config, target, "http://127.0.0.1:8000", tmp_path, info, lambda: saves.append(1)
    ):
        deadline = time.monotonic() + 20
        while not (tmp_path / GPU_FILE).exists() or len(read_gpu_samples(tmp_path / GPU_FILE)) < 3:
            assert time.monotonic() < deadline, "no GPU samples"
            time.sleep(0.02)
    samples = read_gpu_samples(tmp_path / GPU_FILE)
    assert {s.gpu for s in samples} == {1}, "only the target's GPU"
    assert {s.target for s in samples} == {"t"} and samples[0].power_w == 90.0
    assert info.telemetry is not None and info.telemetry.source == "nvml"
    assert info.telemetry.kept == [1] and info.telemetry.samples == len(samples)
    assert len(saves) == 2, "run.json saved when sampling starts and when it ends"


def test_the_nvidia_smi_child_dies_with_quantbench_even_after_kill_9(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    install_fake_nvidia_smi(bin_dir)
    parent = tmp_path / "parent.py"
    parent.write_text(
        textwrap.dedent(
            """
            import sys, threading, time
            from quantbench.gpu_sampler import NvidiaSmiBackend
            backend = NvidiaSmiBackend()
            backend.open()
            stream = backend.stream(60.0, threading.Event())  # -lms 60000: silent after one
            next(stream)
            print(backend._proc.pid, flush=True)
            time.sleep(600)
            """
        )
    )
    env = {**os.environ, "PATH": path_with(bin_dir), "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(
        [sys.executable, str(parent)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    child = int(proc.stdout.readline())
    assert _alive(child), "nvidia-smi -lms runs while quantbench does"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # silent for a minute, it would not even die of a broken pipe: only the lifeline ends it
    deadline = time.monotonic() + 15
    while _alive(child):
        assert time.monotonic() < deadline, "nvidia-smi outlived quantbench"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper has already died)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    state = next(line for line in status.splitlines() if line.startswith("State:"))
    return "zombie" not in state and "dead" not in state
