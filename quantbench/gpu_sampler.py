"""GPU samples of this host into `gpu.jsonl` while a run goes, for hosts without dcgm-exporter.

Two backends, chosen by name or the first that works (`auto`): NVML through nvidia-ml-py (the
library nvidia-smi itself sits on; NVIDIA recommends it over parsing nvidia-smi, whose output
"is not guaranteed to be backwards compatible", nvidia-smi(1)), and `nvidia-smi --query-gpu=...
--format=csv,noheader,nounits -lms N` where NVML cannot be loaded. Both write the same
loadtest.gpu_records.GpuSample. The NVML module, the wall clock and the programs run are
injectable, so tests use a fake NVML and a fake nvidia-smi. A host without a GPU gets one
`NoGpu` line saying what each backend found; a sampler that fails mid-run keeps what it wrote
and records the error instead of raising.

    python -m quantbench.gpu_sampler --out runs/x --interval-ms 500   # until Ctrl-C
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from loadtest.gpu_records import GPU_FILE, GpuSample
from loadtest.records import RecordWriter
from quantbench.children import lifeline_argv
from quantbench.errors import HarnessError

__all__ = [
    "BACKENDS",
    "GpuBackend",
    "GpuSampler",
    "NoGpu",
    "NvidiaSmiBackend",
    "NvmlBackend",
    "closing_sample",
    "open_backend",
]

_MIB = 1024 * 1024


class NoGpu(HarnessError):
    """No GPU can be sampled on this host; the message says what each backend found."""


class GpuBackend(Protocol):
    """A source of GPU samples: `open` raises NoGpu; `stream` yields batches of samples until
    `stop` is set or the source ends; `close` releases it (and ends a running stream)."""

    name: str

    def open(self) -> list[str]: ...

    def stream(self, interval_s: float, stop: threading.Event) -> Iterator[list[GpuSample]]: ...

    def close(self) -> None: ...


def closing_sample(read: Callable[[], list[GpuSample]]) -> Iterator[list[GpuSample]]:
    """One last sample when the sampling is stopped, so that the end of the window measured
    last lies between two samples (its energy from the counter, like every other window's);
    a source that fails at that moment just has none."""
    try:
        batch = read()
    except Exception:  # the sampling is over: a failed closing read is no error of the run
        return
    if batch:
        yield batch


class NvmlBackend:
    """NVML through nvidia-ml-py (`import pynvml`); `nvml` replaces the module (tests).

    Units: power and limits in mW, energy in mJ (nvmlDeviceGetTotalEnergyConsumption, Volta
    and newer), memory in bytes; utilisation in % "over the past sample period" of the driver
    (1/6 s to 1 s by product, nvml.h). On Ampere and newer (except GA100) the power reading is
    a one-second average (nvmlDeviceGetPowerUsage, nvml.h). A field the GPU does not support
    is None."""

    name = "nvml"

    def __init__(self, nvml: Any = None, clock: Callable[[], float] = time.time) -> None:
        self._nvml = nvml
        self._clock = clock
        self._handles: list[tuple[int, Any, str, str]] = []  # index, handle, uuid, name
        self._initialised = False

    def open(self) -> list[str]:
        nvml = self._nvml
        if nvml is None:
            try:
                nvml = self._nvml = importlib.import_module("pynvml")
            except ImportError as exc:
                raise NoGpu("NVML: nvidia-ml-py is not installed") from exc
        try:
            nvml.nvmlInit()
            self._initialised = True
            count = nvml.nvmlDeviceGetCount()
            for index in range(count):
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                uuid = _text(nvml.nvmlDeviceGetUUID(handle))
                name = _text(nvml.nvmlDeviceGetName(handle))
                self._handles.append((index, handle, uuid, name))
        except nvml.NVMLError as exc:
            self.close()
            raise NoGpu(f"NVML: {exc}") from exc
        if not self._handles:
            self.close()
            raise NoGpu("NVML: the driver lists no GPU")
        return [f"{index} {name} {uuid}" for index, _, uuid, name in self._handles]

    def read(self) -> list[GpuSample]:
        """One sample of every GPU, now."""
        nvml = self._nvml
        wall_s = self._clock()
        samples = []
        for index, handle, uuid, name in self._handles:
            util = self._try(nvml.nvmlDeviceGetUtilizationRates, handle)
            memory = self._try(nvml.nvmlDeviceGetMemoryInfo, handle)
            samples.append(
                GpuSample(
                    wall_s=wall_s,
                    source="nvml",
                    gpu=index,
                    uuid=uuid,
                    name=name,
                    power_w=_scaled(self._try(nvml.nvmlDeviceGetPowerUsage, handle), 1e-3),
                    energy_mj=self._try(nvml.nvmlDeviceGetTotalEnergyConsumption, handle),
                    power_limit_w=_scaled(
                        self._try(nvml.nvmlDeviceGetEnforcedPowerLimit, handle), 1e-3
                    ),
                    gpu_util_pct=None if util is None else util.gpu,
                    mem_util_pct=None if util is None else util.memory,
                    memory_used_mib=None if memory is None else memory.used / _MIB,
                    memory_total_mib=None if memory is None else memory.total / _MIB,
                    temperature_c=self._try(
                        nvml.nvmlDeviceGetTemperature, handle, nvml.NVML_TEMPERATURE_GPU
                    ),
                    throttle_reasons=self._reasons(handle),
                    sm_clock_mhz=self._try(nvml.nvmlDeviceGetClockInfo, handle, nvml.NVML_CLOCK_SM),
                    mem_clock_mhz=self._try(
                        nvml.nvmlDeviceGetClockInfo, handle, nvml.NVML_CLOCK_MEM
                    ),
                )
            )
        return samples

    def stream(self, interval_s: float, stop: threading.Event) -> Iterator[list[GpuSample]]:
        while not stop.is_set():
            yield self.read()
            if stop.wait(interval_s):
                yield from closing_sample(self.read)
                return

    def close(self) -> None:
        if self._initialised:
            self._initialised, self._handles = False, []
            with contextlib.suppress(self._nvml.NVMLError):
                self._nvml.nvmlShutdown()

    def _reasons(self, handle: Any) -> int | None:
        """Clock-event reasons; drivers before R535 know only the older "throttle" call."""
        nvml = self._nvml
        for call in ("nvmlDeviceGetCurrentClocksEventReasons",
                     "nvmlDeviceGetCurrentClocksThrottleReasons"):  # fmt: skip
            function = getattr(nvml, call, None)
            if function is not None and (value := self._try(function, handle)) is not None:
                return int(value)
        return None

    def _try(self, function: Callable[..., Any], *args: Any) -> Any:
        try:
            return function(*args)
        except self._nvml.NVMLError:
            return None


# nvidia-smi --query-gpu fields, in the order of the CSV columns.
_SMI_FIELDS = (
    "timestamp", "index", "uuid", "name", "power.draw", "enforced.power.limit",
    "utilization.gpu", "utilization.memory", "memory.used", "memory.total", "temperature.gpu",
    "clocks.sm", "clocks.mem", "clocks_event_reasons.active",
)  # fmt: skip
# Drivers before R535 call the last field clocks_throttle_reasons.active.
_SMI_LEGACY = {"clocks_event_reasons.active": "clocks_throttle_reasons.active"}
_SMI_TIME = "%Y/%m/%d %H:%M:%S.%f"


class NvidiaSmiBackend:
    """`nvidia-smi --query-gpu=... --format=csv,noheader,nounits`: probed once, then run with
    `-lms N` (one line per GPU every N ms) until closed. Each line's own `timestamp` (local
    time, ms) dates the sample, so pipe buffering does not shift it. nvidia-smi has no energy
    counter: energy comes from the integral of power.draw. `run` and `popen` are injectable.

    The `-lms` process runs behind quantbench.children's exec wrapper, in its own process
    group: it dies with this process even after a `kill -9`, and a Ctrl-C reaches only us."""

    name = "nvidia-smi"

    def __init__(
        self,
        binary: str = "nvidia-smi",
        run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run,
        popen: Callable[..., subprocess.Popen[str]] = subprocess.Popen,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._binary = binary
        self._run = run
        self._popen = popen
        self._clock = clock
        self._fields = list(_SMI_FIELDS)
        self._proc: subprocess.Popen[str] | None = None

    def _argv(self, *extra: str) -> list[str]:
        query = ",".join(self._fields)
        return [self._binary, f"--query-gpu={query}", "--format=csv,noheader,nounits", *extra]

    def open(self) -> list[str]:
        out = self._probe()
        if "is not a valid field" in out:
            self._fields = [_SMI_LEGACY.get(field, field) for field in self._fields]
            out = self._probe()
        samples = [s for line in out.splitlines() if (s := self.parse(line)) is not None]
        if not samples:
            raise NoGpu(f"nvidia-smi: {_last_line(out) or 'lists no GPU'}")
        return [f"{s.gpu} {s.name} {s.uuid}" for s in samples]

    def _probe(self) -> str:
        try:
            done = self._run(self._argv(), capture_output=True, text=True, timeout=30, check=False)
        except FileNotFoundError as exc:
            raise NoGpu(f"nvidia-smi: `{self._binary}` not found (no NVIDIA driver)") from exc
        except (OSError, subprocess.SubprocessError) as exc:
            raise NoGpu(f"nvidia-smi: {exc}") from exc
        text = (done.stdout or "") + (done.stderr or "")
        if done.returncode != 0 and "is not a valid field" not in text:
            raise NoGpu(f"nvidia-smi: {_last_line(text) or f'exit status {done.returncode}'}")
        return text

    def parse(self, line: str) -> GpuSample | None:
        """One CSV line of the query as a sample; None for a line that is not one."""
        cells = [cell.strip() for cell in line.split(",")]
        if len(cells) != len(self._fields) or not cells[1].isdigit():
            return None
        value = dict(zip(self._fields, cells, strict=True))
        try:
            wall_s = datetime.strptime(value["timestamp"], _SMI_TIME).timestamp()
        except ValueError:
            wall_s = self._clock()
        reasons = value.get("clocks_event_reasons.active") or value.get(
            "clocks_throttle_reasons.active", ""
        )
        return GpuSample(
            wall_s=wall_s,
            source="nvidia-smi",
            gpu=int(value["index"]),
            uuid=value["uuid"],
            name=value["name"],
            power_w=_number(value["power.draw"]),
            power_limit_w=_number(value["enforced.power.limit"]),
            gpu_util_pct=_number(value["utilization.gpu"]),
            mem_util_pct=_number(value["utilization.memory"]),
            memory_used_mib=_number(value["memory.used"]),
            memory_total_mib=_number(value["memory.total"]),
            temperature_c=_number(value["temperature.gpu"]),
            sm_clock_mhz=_number(value["clocks.sm"]),
            mem_clock_mhz=_number(value["clocks.mem"]),
            throttle_reasons=_bitmask(reasons),
        )

    def stream(self, interval_s: float, stop: threading.Event) -> Iterator[list[GpuSample]]:
        period_ms = max(int(interval_s * 1000), 1)
        self._proc = self._popen(
            lifeline_argv(self._argv("-lms", str(period_ms))),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            text=True,
            process_group=0,
        )
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            sample = self.parse(line)
            if sample is not None:
                yield [sample]
            if stop.is_set():  # the line after the stop was the closing sample
                return

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


BACKENDS: dict[str, Callable[[], GpuBackend]] = {
    "nvml": NvmlBackend,
    "nvidia-smi": NvidiaSmiBackend,
}


def open_backend(
    name: str = "auto", factories: dict[str, Callable[[], GpuBackend]] | None = None
) -> tuple[GpuBackend, list[str]]:
    """The named backend, opened, with a line per GPU it sees; `auto`: each of `factories` in
    order (default NVML, then nvidia-smi). Raises NoGpu naming what each backend tried found."""
    factories = factories or BACKENDS
    if name != "auto" and name not in factories:
        raise NoGpu(f"unknown GPU backend {name!r} (have: auto, {', '.join(factories)})")
    reasons = []
    for candidate in factories if name == "auto" else [name]:
        backend = factories[candidate]()
        try:
            return backend, backend.open()
        except NoGpu as exc:
            reasons.append(str(exc))
    raise NoGpu("no GPU: " + "; ".join(reasons))


class GpuSampler:
    """Writes a backend's samples to `<run_dir>/gpu.jsonl` on a background thread.

    `with GpuSampler(run_dir, backend, interval_s=0.5): ...` or `start()`/`stop()`. Only
    the GPUs in `gpus` are kept (None: all); `target` names the target measured meanwhile on
    every sample (`quantbench run`). A backend that fails mid-run ends the sampling: `error`
    says why, the samples written stay."""

    def __init__(
        self,
        run_dir: Path,
        backend: GpuBackend,
        interval_s: float = 0.5,
        gpus: Collection[int] | None = None,
        target: str | None = None,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be > 0")
        self.path = Path(run_dir) / GPU_FILE
        self.backend = backend
        self.interval_s = interval_s
        self.gpus = None if gpus is None else frozenset(gpus)
        self.target = target
        self.samples_written = 0
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._writer: RecordWriter | None = None

    def start(self) -> GpuSampler:
        self._writer = RecordWriter(self.path)
        self._thread = threading.Thread(target=self._run, name="gpu-sampler", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        assert self._writer is not None
        try:
            for batch in self.backend.stream(self.interval_s, self._stop):
                for sample in batch:
                    if self.gpus is None or sample.gpu in self.gpus:
                        if self.target is not None:
                            sample = sample.model_copy(update={"target": self.target})
                        self._writer.write(sample)
                        self.samples_written += 1
        except Exception as exc:  # a failed sample is a record of the failure, not a crash
            self.error = f"{self.backend.name}: {type(exc).__name__}: {exc}"

    def wait(self, timeout_s: float | None = None) -> None:
        """Block until the sampling ends by itself (the backend failed or ran out) or
        `timeout_s` passes."""
        if self._thread is not None:
            self._thread.join(timeout_s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:  # its closing sample first, while the backend is open
            self._thread.join(timeout=self.interval_s + 5)
        self.backend.close()  # ends a stream still blocked on its source (nvidia-smi)
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> GpuSampler:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m quantbench.gpu_sampler",
        description="Sample this host's GPUs (power, energy, utilisation, memory, temperature, "
        "clock-event reasons) into OUT/gpu.jsonl until Ctrl-C or --duration-s; for hosts "
        "without dcgm-exporter. Exit 2 when there is no GPU.",
    )
    parser.add_argument("--out", type=Path, default=Path("."), help="directory (default: .)")
    parser.add_argument("--interval-ms", type=int, default=500, help="default 500")
    parser.add_argument("--backend", choices=["auto", *BACKENDS], default="auto")
    parser.add_argument("--duration-s", type=float, default=None, help="default: until Ctrl-C")
    args = parser.parse_args(argv)
    if args.interval_ms <= 0:
        parser.error("--interval-ms must be > 0")
    try:
        backend, gpus = open_backend(args.backend)
    except NoGpu as exc:
        print(f"quantbench gpu sampler: {exc}", file=sys.stderr)
        return 2
    path = args.out / GPU_FILE
    every = f"every {args.interval_ms} ms into {path}"
    print(f"sampling {len(gpus)} GPU(s) through {backend.name} {every}:", flush=True)
    for line in gpus:
        print(f"  GPU {line}", flush=True)
    sampler = GpuSampler(args.out, backend, args.interval_ms / 1000)
    try:
        with sampler:
            sampler.wait(args.duration_s)
    except KeyboardInterrupt:
        pass
    print(f"{sampler.samples_written} samples in {path}", flush=True)
    if sampler.error:
        print(f"quantbench gpu sampler: stopped early: {sampler.error}", file=sys.stderr)
        return 2
    return 0


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _scaled(value: float | None, factor: float) -> float | None:
    return None if value is None else value * factor


def _number(cell: str) -> float | None:
    """A numeric CSV cell; None for nvidia-smi's `[N/A]`, `[Not Supported]` and the like."""
    try:
        return float(cell)
    except ValueError:
        return None


def _bitmask(cell: str) -> int | None:
    try:
        return int(cell, 16) if cell.lower().startswith("0x") else int(cell)
    except ValueError:
        return None


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


if __name__ == "__main__":
    sys.exit(main())
