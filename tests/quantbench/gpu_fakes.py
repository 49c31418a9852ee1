"""Fakes for the GPU sampler: an NVML module with the real pynvml's names, constants and error
classes, and an `nvidia-smi` script that answers `--query-gpu` like the real one."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pynvml


@dataclass
class FakeGpu:
    uuid: str
    name: str = "NVIDIA H100 80GB HBM3"
    power_mw: int = 250_000
    limit_mw: int = 700_000
    util_gpu: int = 80
    util_mem: int = 40
    used_bytes: int = 40 * 1024**3
    total_bytes: int = 80 * 1024**3
    temp_c: int = 60
    reasons: int = 0x4
    sm_mhz: int = 1755
    mem_mhz: int = 2619
    energy: bool = True  # Volta and newer have the counter
    energy_mj: float = 1e9
    unsupported: set[str] = field(default_factory=set)


class FakeNvml:
    """The subset of pynvml the sampler calls. `clock` advances the energy counter by each
    GPU's power between reads; `old_driver` lacks nvmlDeviceGetCurrentClocksEventReasons
    (the driver library has no such function: NVML_ERROR_FUNCTION_NOT_FOUND)."""

    NVMLError = pynvml.NVMLError
    NVML_TEMPERATURE_GPU = pynvml.NVML_TEMPERATURE_GPU
    NVML_CLOCK_SM = pynvml.NVML_CLOCK_SM
    NVML_CLOCK_MEM = pynvml.NVML_CLOCK_MEM

    def __init__(
        self,
        gpus: list[FakeGpu],
        clock: Callable[[], float] | None = None,
        init_error: int | None = None,
        old_driver: bool = False,
    ) -> None:
        self.gpus = gpus
        self.clock = clock
        self.init_error = init_error
        self.old_driver = old_driver
        self.initialised = False
        self.shutdowns = 0
        self._last_read: dict[int, float] = {}

    def _gpu(self, handle: int, call: str) -> FakeGpu:
        if not self.initialised:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_UNINITIALIZED)
        gpu = self.gpus[handle]
        if call in gpu.unsupported:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return gpu

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise pynvml.NVMLError(self.init_error)
        self.initialised = True

    def nvmlShutdown(self) -> None:
        self.initialised = False
        self.shutdowns += 1

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus) if self.initialised else 0

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetUUID(self, handle: int) -> str:
        return self._gpu(handle, "uuid").uuid

    def nvmlDeviceGetName(self, handle: int) -> bytes:
        return self._gpu(handle, "name").name.encode()  # older pynvml returned bytes

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        return self._gpu(handle, "power").power_mw

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: int) -> int:
        return self._gpu(handle, "limit").limit_mw

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: int) -> int:
        gpu = self._gpu(handle, "energy")
        if not gpu.energy:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        if self.clock is not None:
            now = self.clock()
            gpu.energy_mj += (now - self._last_read.get(handle, now)) * gpu.power_mw
            self._last_read[handle] = now
        return int(gpu.energy_mj)

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> SimpleNamespace:
        gpu = self._gpu(handle, "util")
        return SimpleNamespace(gpu=gpu.util_gpu, memory=gpu.util_mem)

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> SimpleNamespace:
        gpu = self._gpu(handle, "memory")
        free = gpu.total_bytes - gpu.used_bytes
        return SimpleNamespace(total=gpu.total_bytes, used=gpu.used_bytes, free=free)

    def nvmlDeviceGetTemperature(self, handle: int, sensor: int) -> int:
        assert sensor == pynvml.NVML_TEMPERATURE_GPU
        return self._gpu(handle, "temperature").temp_c

    def nvmlDeviceGetClockInfo(self, handle: int, kind: int) -> int:
        gpu = self._gpu(handle, "clocks")
        return {pynvml.NVML_CLOCK_SM: gpu.sm_mhz, pynvml.NVML_CLOCK_MEM: gpu.mem_mhz}[kind]

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: int) -> int:
        if self.old_driver:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)
        return self._gpu(handle, "reasons").reasons

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle: int) -> int:
        return self._gpu(handle, "reasons").reasons


# A stand-in for nvidia-smi: `--query-gpu=F1,F2,... --format=csv,noheader,nounits [-lms N]`.
# FAKE_SMI_LEGACY=1 rejects clocks_event_reasons.active like drivers before R535;
# FAKE_SMI_FAIL=text prints it and exits 9 like a host whose driver is not loaded.
_SMI_SCRIPT = r"""
import os, sys, time
from datetime import datetime

if os.environ.get("FAKE_SMI_FAIL"):
    print(os.environ["FAKE_SMI_FAIL"])
    sys.exit(9)
args = sys.argv[1:]
query = next(a.split("=", 1)[1] for a in args if a.startswith("--query-gpu="))
assert "--format=csv,noheader,nounits" in args, args
fields = query.split(",")
if os.environ.get("FAKE_SMI_LEGACY") and "clocks_event_reasons.active" in fields:
    print('Field "clocks_event_reasons.active" is not a valid field to query.')
    sys.exit(2)
loop_ms = int(args[args.index("-lms") + 1]) if "-lms" in args else None
gpus = [
    {"index": "0", "uuid": "GPU-0a1b", "name": "NVIDIA A100-SXM4-80GB", "power.draw": "287.41",
     "enforced.power.limit": "400.00", "utilization.gpu": "93", "utilization.memory": "58",
     "memory.used": "71210", "memory.total": "81920", "temperature.gpu": "64",
     "clocks.sm": "1410", "clocks.mem": "1593"},
    {"index": "1", "uuid": "GPU-2c3d", "name": "NVIDIA A100-SXM4-80GB", "power.draw": "[N/A]",
     "enforced.power.limit": "400.00", "utilization.gpu": "0", "utilization.memory": "0",
     "memory.used": "4", "memory.total": "81920", "temperature.gpu": "31",
     "clocks.sm": "210", "clocks.mem": "1593"},
]
reasons = {"0": "0x0000000000000004", "1": "0x0000000000000001"}
for _ in range(2000):
    stamp = datetime.now().strftime("%Y/%m/%d %H:%M:%S.%f")[:-3]
    for gpu in gpus:
        values = {**gpu, "timestamp": stamp, "clocks_event_reasons.active": reasons[gpu["index"]],
                  "clocks_throttle_reasons.active": reasons[gpu["index"]]}
        print(", ".join(values[f] for f in fields), flush=True)
    if loop_ms is None:
        break
    time.sleep(loop_ms / 1000)
"""


def install_fake_nvidia_smi(directory: Path) -> Path:
    """Write an executable `nvidia-smi` into `directory` (put it first on PATH)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "nvidia-smi"
    path.write_text(f"#!{sys.executable}\n{_SMI_SCRIPT}")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def path_with(directory: Path) -> str:
    return f"{directory}{os.pathsep}{os.environ.get('PATH', '')}"
