"""The GPU sampler: NVML (a fake module with pynvml's real names) and nvidia-smi (a fake script
on PATH) give the same records in gpu.jsonl with the record's units; a host without a GPU gets
one line naming what each backend found."""

from __future__ import annotations

import inspect
import itertools
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pynvml
import pytest

from loadtest.gpu_records import GPU_FILE, ThrottleReason, read_gpu_samples
from quantbench import gpu_sampler
from quantbench.gpu_sampler import (
    GpuBackend,
    GpuSampler,
    NoGpu,
    NvidiaSmiBackend,
    NvmlBackend,
    open_backend,
)
from tests.procs import REPO_ROOT
from tests.quantbench.gpu_fakes import FakeGpu, FakeNvml, install_fake_nvidia_smi, path_with


def _wait_for(condition: Callable[[], bool], what: str, deadline_s: float = 20.0) -> None:
    end = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.01)


class ScriptedClock:
    """Wall time that moves 0.5 s per reading, whatever the real timing."""

    def __init__(self, start: float = 1_800_000_000.0, step: float = 0.5) -> None:
        self.now, self.step = start - step, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_the_fake_nvml_only_uses_names_the_real_pynvml_has() -> None:
    names = [n for n, _ in inspect.getmembers(FakeNvml) if n.startswith(("nvml", "NVML"))]
    assert names, "the fake defines the NVML surface"
    missing = [n for n in names if not hasattr(pynvml, n)]
    assert not missing, f"pynvml has no {missing}: the fake drifted from the real module"


def test_nvml_samples_every_gpu_in_the_records_units(tmp_path: Path) -> None:
    clock = ScriptedClock()
    gpus = [
        FakeGpu(uuid="GPU-aaa", power_mw=612_345, reasons=0x4),
        FakeGpu(uuid="GPU-bbb", power_mw=71_000, energy=False, reasons=0x1, unsupported={"util"}),
    ]
    # The driver's counter integrates power over the same time the samples are dated with.
    backend = NvmlBackend(FakeNvml(gpus, clock=lambda: clock.now), clock=clock)
    assert backend.open() == [
        "0 NVIDIA H100 80GB HBM3 GPU-aaa",
        "1 NVIDIA H100 80GB HBM3 GPU-bbb",
    ]
    with GpuSampler(tmp_path, backend, interval_s=0.005) as sampler:
        _wait_for(lambda: sampler.samples_written >= 6, "six samples")
    assert sampler.error is None
    samples = read_gpu_samples(tmp_path / GPU_FILE)
    assert len(samples) == sampler.samples_written
    busy = [s for s in samples if s.gpu == 0]
    idle = [s for s in samples if s.gpu == 1]
    first = busy[0]
    assert first.source == "nvml" and first.uuid == "GPU-aaa" and not first.simulated
    assert first.power_w == pytest.approx(612.345), "NVML reports mW"
    assert first.power_limit_w == pytest.approx(700.0)
    assert first.memory_used_mib == 40 * 1024 and first.memory_total_mib == 80 * 1024
    assert (first.gpu_util_pct, first.mem_util_pct, first.temperature_c) == (80, 40, 60)
    assert (first.sm_clock_mhz, first.mem_clock_mhz) == (1755, 2619)
    assert first.throttle_reasons == ThrottleReason.SW_POWER_CAP and first.throttled
    # The counter grows by power x time between readings (scripted clock: 0.5 s apart).
    steps = [b.energy_mj - a.energy_mj for a, b in itertools.pairwise(busy)]  # type: ignore[operator]
    assert steps and all(step == pytest.approx(0.5 * 612_345, abs=1) for step in steps), "mJ"
    assert [b.wall_s - a.wall_s for a, b in itertools.pairwise(busy)] == [0.5] * len(steps)
    assert all(s.energy_mj is None and s.gpu_util_pct is None for s in idle), "not supported"
    assert all(s.power_w == pytest.approx(71.0) for s in idle)
    assert backend._nvml.shutdowns == 1, "stop() shuts NVML down"


def test_nvml_on_an_old_driver_reads_the_throttle_reasons_call() -> None:
    backend = NvmlBackend(FakeNvml([FakeGpu(uuid="GPU-c", reasons=0x40)], old_driver=True))
    backend.open()
    (sample,) = backend.read()
    assert sample.throttle_reasons == ThrottleReason.HW_THERMAL


def test_nvml_without_a_driver_is_no_gpu() -> None:
    missing = FakeNvml([], init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
    with pytest.raises(NoGpu, match=r"^NVML: NVML Shared Library Not Found$"):
        NvmlBackend(missing).open()
    with pytest.raises(NoGpu, match="NVML: the driver lists no GPU"):
        NvmlBackend(FakeNvml([])).open()


def test_only_the_asked_gpus_are_kept(tmp_path: Path) -> None:
    gpus = [FakeGpu(uuid=f"GPU-{i}") for i in range(3)]
    backend = NvmlBackend(FakeNvml(gpus))
    backend.open()
    with GpuSampler(tmp_path, backend, interval_s=0.005, gpus=[2]) as sampler:
        _wait_for(lambda: sampler.samples_written >= 2, "two samples")
    assert {s.gpu for s in read_gpu_samples(tmp_path / GPU_FILE)} == {2}


def test_a_backend_failing_mid_run_keeps_what_was_written(tmp_path: Path) -> None:
    fake = FakeNvml([FakeGpu(uuid="GPU-z")])
    backend = NvmlBackend(fake)
    backend.open()
    calls = {"n": 0}
    real_read = backend.read

    def flaky() -> list:  # type: ignore[type-arg]
        calls["n"] += 1
        if calls["n"] > 3:
            raise RuntimeError("GPU is lost")
        return real_read()

    backend.read = flaky  # type: ignore[method-assign]
    sampler = GpuSampler(tmp_path, backend, interval_s=0.001).start()
    sampler.wait(20)
    sampler.stop()
    assert sampler.error == "nvml: RuntimeError: GPU is lost"
    assert len(read_gpu_samples(tmp_path / GPU_FILE)) == 3


@pytest.fixture
def fake_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    install_fake_nvidia_smi(bin_dir)
    monkeypatch.setenv("PATH", path_with(bin_dir))
    for name in ("FAKE_SMI_LEGACY", "FAKE_SMI_FAIL"):
        monkeypatch.delenv(name, raising=False)
    return bin_dir


@pytest.mark.parametrize("legacy", [False, True], ids=["r535+", "older-driver"])
def test_nvidia_smi_streams_samples_until_stopped(
    legacy: bool, fake_smi: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if legacy:
        monkeypatch.setenv("FAKE_SMI_LEGACY", "1")
    backend = NvidiaSmiBackend()
    assert backend.open() == [
        "0 NVIDIA A100-SXM4-80GB GPU-0a1b",
        "1 NVIDIA A100-SXM4-80GB GPU-2c3d",
    ]
    before = time.time()
    out = tmp_path / "run"
    with GpuSampler(out, backend, interval_s=0.02) as sampler:
        _wait_for(lambda: sampler.samples_written >= 6, "six samples")
        proc = backend._proc
        assert proc is not None and proc.poll() is None
        assert proc.args[-2:] == ["-lms", "20"]  # type: ignore[index]
    assert proc.poll() is not None, "stop() ends nvidia-smi"
    samples = read_gpu_samples(out / GPU_FILE)
    assert sampler.error is None and len(samples) >= 6
    first = next(s for s in samples if s.gpu == 0)
    assert first.source == "nvidia-smi" and first.uuid == "GPU-0a1b"
    assert before - 2 <= first.wall_s <= time.time() + 2, "dated by nvidia-smi's own timestamp"
    assert first.power_w == pytest.approx(287.41) and first.power_limit_w == 400.0
    assert first.memory_used_mib == 71210 and first.memory_total_mib == 81920
    assert (first.gpu_util_pct, first.mem_util_pct, first.temperature_c) == (93, 58, 64)
    assert first.throttle_reasons == ThrottleReason.SW_POWER_CAP
    assert first.energy_mj is None, "nvidia-smi has no energy counter"
    idle = next(s for s in samples if s.gpu == 1)
    assert idle.power_w is None, "[N/A] is None, never 0"
    assert idle.throttle_reasons == ThrottleReason.GPU_IDLE


def test_nvidia_smi_on_a_host_without_a_driver(
    fake_smi: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "FAKE_SMI_FAIL",
        "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.",
    )
    with pytest.raises(NoGpu, match=r"^nvidia-smi: NVIDIA-SMI has failed because it couldn't"):
        NvidiaSmiBackend().open()
    with pytest.raises(NoGpu, match="`/nonexistent/nvidia-smi` not found"):
        NvidiaSmiBackend("/nonexistent/nvidia-smi").open()


def test_auto_falls_back_to_nvidia_smi_and_names_every_reason(fake_smi: Path) -> None:
    def nvml_missing() -> GpuBackend:
        return NvmlBackend(FakeNvml([], init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND))

    def smi_missing() -> GpuBackend:
        return NvidiaSmiBackend("/nonexistent/nvidia-smi")

    def smi_on_path() -> GpuBackend:
        return NvidiaSmiBackend()

    backend, gpus = open_backend("auto", {"nvml": nvml_missing, "nvidia-smi": smi_on_path})
    assert backend.name == "nvidia-smi" and gpus[0] == "0 NVIDIA A100-SXM4-80GB GPU-0a1b"
    with pytest.raises(NoGpu) as caught:
        open_backend("auto", {"nvml": nvml_missing, "nvidia-smi": smi_missing})
    assert str(caught.value) == (
        "no GPU: NVML: NVML Shared Library Not Found; "
        "nvidia-smi: `/nonexistent/nvidia-smi` not found (no NVIDIA driver)"
    )
    with pytest.raises(NoGpu, match=r"unknown GPU backend 'dcgm' \(have: auto, nvml"):
        open_backend("dcgm")  # type: ignore[arg-type]


def test_the_command_says_no_gpu_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    failing = {
        "nvml": lambda: NvmlBackend(FakeNvml([], init_error=pynvml.NVML_ERROR_DRIVER_NOT_LOADED)),
        "nvidia-smi": lambda: NvidiaSmiBackend("/nonexistent/nvidia-smi"),
    }
    monkeypatch.setattr(gpu_sampler, "BACKENDS", failing)
    assert gpu_sampler.main(["--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == (
        "quantbench gpu sampler: no GPU: NVML: Driver Not Loaded; nvidia-smi: "
        "`/nonexistent/nvidia-smi` not found (no NVIDIA driver)\n"
    )
    assert not (tmp_path / GPU_FILE).exists()


def test_the_command_samples_for_a_duration(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr(
        gpu_sampler, "BACKENDS", {"nvml": lambda: NvmlBackend(FakeNvml([FakeGpu(uuid="GPU-q")]))}
    )
    assert (
        gpu_sampler.main(["--out", str(tmp_path), "--interval-ms", "10", "--duration-s", "0.2"])
        == 0
    )
    out = capsys.readouterr().out
    assert out.startswith("sampling 1 GPU(s) through nvml every 10 ms into ")
    written = len(read_gpu_samples(tmp_path / GPU_FILE))
    assert written >= 1 and out.rstrip().endswith(f"{written} samples in {tmp_path / GPU_FILE}")


def test_this_host_as_a_user_runs_it(tmp_path: Path) -> None:
    """The real module, the real pynvml, no nvidia-smi on PATH: on a host without a GPU one
    line and exit 2; on a GPU host, samples."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "quantbench.gpu_sampler", "--out", str(tmp_path),
         "--duration-s", "0.3", "--backend", "auto"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PATH": str(empty)},
    )  # fmt: skip
    if done.returncode == 2:
        assert done.stderr.startswith("quantbench gpu sampler: no GPU: NVML: "), done.stderr
        assert "nvidia-smi: `nvidia-smi` not found" in done.stderr
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    else:
        assert done.returncode == 0, done.stderr
        assert read_gpu_samples(tmp_path / GPU_FILE), "a GPU host writes samples"


def test_a_stop_during_a_wait_ends_the_nvml_stream_at_once() -> None:
    backend = NvmlBackend(FakeNvml([FakeGpu(uuid="GPU-w")]), clock=ScriptedClock())
    backend.open()
    stop = threading.Event()
    stream = backend.stream(3600.0, stop)
    first = next(stream)
    stop.set()
    rest = list(stream)  # stop.wait returns as soon as stop is set: no hour-long wait
    assert len(rest) == 1, "one closing sample, then the end"
    assert rest[0][0].wall_s > first[0].wall_s


def test_stopping_takes_a_closing_sample_so_the_last_window_is_bracketed(
    tmp_path: Path,
) -> None:
    """The last stage of a target ends just before the sampler stops: without a sample after
    its end, its energy fell back to the power integral while every other stage used the
    counter (gpu_energy_method differed between targets of one run)."""
    backend = NvmlBackend(FakeNvml([FakeGpu(uuid="GPU-c")]), clock=ScriptedClock())
    backend.open()
    sampler = GpuSampler(tmp_path, backend, interval_s=3600.0).start()
    _wait_for(lambda: sampler.samples_written >= 1, "the first sample")
    sampler.stop()
    samples = read_gpu_samples(tmp_path / GPU_FILE)
    assert len(samples) == 2 and samples[1].wall_s > samples[0].wall_s
    assert sampler.error is None


def test_a_closing_sample_that_fails_is_no_error() -> None:
    from quantbench.gpu_sampler import closing_sample

    def lost() -> list:  # type: ignore[type-arg]
        raise RuntimeError("the exporter went away with its server")

    assert list(closing_sample(lost)) == []
