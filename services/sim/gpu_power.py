"""The simulated GPU under a simulated engine: power, energy, utilisation and memory that follow
the batch and the quantization. Every figure is SIMULATED (docs/telemetry.md, "Simulated GPU").

The engine's observer hooks (`GpuTee`, wrapped around the stack's metrics observer) tell the
GPU when work starts and stops and how many tokens each step computed, and when, on the
engine's own schedule (the due time of its tokens), so a late timer on a busy host never
squeezes a step into a spike of power. Power is piecewise
constant over *segments*: idle time, and (profile timing) each engine step, whose energy is

    (idle + active + memory x dram) x duration  +  tokens x joules_per_token

capped at the board limit (a capped segment counts as power-capped time). `dram` is how busy
the memory interface is while decoding: the bytes of weights a step reads over the step's
base time and the card's bandwidth, so 4-bit weights (a third of FP16's bytes) draw less
memory power; `joules_per_token` is the compute energy of a token, the card's compute power at
the profile's prefill rate (compute bound), so 4-bit kernels, whose prefill dequantises, spend
more per token. The energy counter is the exact sum of the segments' energy.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from services.sim.config import EngineProfile, SimSettings
from services.sim.engine import EngineObserver, FinishReason, SimSequence
from services.sim.errors import SimConfigError
from services.sim.gpu_specs import KV_BYTES_PER_TOKEN, GpuSpec, gpu_spec, weight_bytes
from services.sim.profiles import load_profile

__all__ = ["GpuReading", "GpuTee", "PowerModel", "Segment", "SimulatedGpu", "power_model"]

_MIB = 1024 * 1024
# Share of the power left above idle and clock-up that compute-bound kernels (prefill) draw.
_COMPUTE_SHARE = 0.8
# SM activity of a decode step with no compute to speak of: GEMV kernels spread over every
# SM; 4-bit kernels dequantise every weight on the SMs, so they keep them busier.
_SM_FLOOR, _SM_FLOOR_4BIT = 0.45, 0.6
_FOUR_BIT = frozenset({"awq", "gptq", "exl2"})
_RUNTIME_MIB = 1536.0  # CUDA context, activations and graphs beside weights and KV
_AMBIENT_C, _HEAT_C = 30.0, 50.0  # temperature: ambient + heat x (power / limit)
_IDLE, _POWER_CAP = 0x1, 0x4  # clock-event reason bits (loadtest.gpu_records.ThrottleReason)


@dataclass(frozen=True)
class PowerModel:
    """The numbers that turn one simulated server's engine activity into power."""

    spec: GpuSpec
    quant: str
    dram_busy: float  # memory-interface activity while the engine works, 0-1
    sm_floor: float
    compute_max_w: float  # compute power at the profile's prefill rate
    joules_per_token: float  # in the engine's own (speed-scaled) time
    weights_mib: float
    kv_cache_tokens: int
    tokens_per_s_per_sequence: float | None  # fixed timing: each running stream's token rate

    @property
    def busy_base_w(self) -> float:
        """Power while the engine works, before the compute of its tokens."""
        spec = self.spec
        return spec.idle_w + spec.active_w + spec.memory_w * self.dram_busy


def _profile_for(settings: SimSettings) -> EngineProfile:
    """The engine profile whose rates the power model uses; under fixed timing a label may have
    no profile, and the stack's FP16 (else vLLM FP16) profile on the same card stands in."""
    for stack, quant in (
        (settings.stack, settings.quant),
        (settings.stack, "fp16"),
        ("vllm", "fp16"),
    ):
        try:
            return load_profile(stack, quant, settings.gpu)
        except SimConfigError:
            continue
    return load_profile("vllm", "fp16", "h100")


def power_model(settings: SimSettings) -> PowerModel:
    """The power model of the simulator `settings` describe (its card, quant and timing)."""
    spec = gpu_spec(settings.gpu)
    profile = _profile_for(settings)
    fixed = settings.timing == "fixed"
    step_s = (settings.itl_ms if fixed else profile.decode_step_base_ms) / 1000.0
    weights = weight_bytes(settings.quant)
    dram = min(1.0, weights / (max(step_s, 1e-6) * spec.memory_bytes_per_s))
    compute_max_w = _COMPUTE_SHARE * (spec.tdp_w - spec.idle_w - spec.active_w)
    per_token_s = profile.prefill_ms_per_token / 1000.0
    quant = settings.quant.lower()
    return PowerModel(
        spec=spec,
        quant=quant,
        dram_busy=dram,
        sm_floor=_SM_FLOOR_4BIT if quant in _FOUR_BIT else _SM_FLOOR,
        compute_max_w=compute_max_w,
        joules_per_token=compute_max_w * per_token_s / settings.speed,
        weights_mib=weights / _MIB,
        kv_cache_tokens=profile.kv_cache_tokens,
        tokens_per_s_per_sequence=(
            settings.speed / step_s if fixed and settings.itl_ms > 0 else None
        ),
    )


@dataclass(frozen=True)
class Segment:
    """A stretch of constant power: `energy_j` over [start_s, end_s] of the GPU's clock."""

    start_s: float
    end_s: float
    energy_j: float
    busy: bool
    capped: bool
    sm_active: float
    tensor_active: float
    dram_active: float

    @property
    def power_w(self) -> float:
        return self.energy_j / (self.end_s - self.start_s)


@dataclass(frozen=True)
class GpuReading:
    """What the card reports at one instant (DCGM units)."""

    power_w: float
    energy_mj: int
    power_limit_w: float
    gpu_util_pct: int
    mem_copy_util_pct: int
    gr_engine_active: float
    sm_active: float
    tensor_active: float
    dram_active: float
    fb_used_mib: int
    fb_free_mib: int
    fb_reserved_mib: int
    temperature_c: int
    sm_clock_mhz: int
    mem_clock_mhz: int
    clock_event_reasons: int
    power_violation_ns: int


class SimulatedGpu:
    """One simulated card: integrates its segments' energy and reads like a real one.

    `clock` is the engine's clock (default `time.monotonic`, which asyncio's loop uses);
    `history`, when given, receives every closed segment (tests integrate it exactly).
    Readings average over the last second (the utilisation sample period, and the power
    averaging window of `spec.power_window_s`)."""

    window_s = 1.0

    def __init__(
        self,
        model: PowerModel,
        clock: Callable[[], float] = time.monotonic,
        history: list[Segment] | None = None,
    ) -> None:
        self.model = model
        self._clock = clock
        self._history = history
        self._started = self._open = clock()
        self._busy = False
        self._running = 0
        self._kv_tokens = 0
        self._pending_tokens = 0
        self._due: float | None = None
        self._energy_j = 0.0
        self._capped_s = 0.0
        self._recent: deque[Segment] = deque()
        self._last_busy_w = model.busy_base_w

    # ------------------------------------------------------------------ activity
    def work_changed(self, running: int, waiting: int, kv_usage: float) -> None:
        """The engine's queue changed: idle <-> busy, and what the batch holds now."""
        now = self._clock()
        busy = running + waiting > 0
        rate = self.model.tokens_per_s_per_sequence
        if rate is not None:  # fixed timing: every running stream computes at its own rate
            self._close(now, self._running * rate * max(now - self._open, 0.0), self._busy)
        elif busy != self._busy:
            self._close(now, 0, self._busy)
        self._busy, self._running = busy, running
        self._kv_tokens = round(kv_usage * self.model.kv_cache_tokens)

    def token_due(self, due: float) -> None:
        """A token was produced at `due`, the engine's own time for the step's end."""
        self._due = due if self._due is None else max(self._due, due)

    def step_done(self, tokens: int) -> None:
        """An engine step (profile timing) ended, having computed `tokens` tokens: at the due
        time of its tokens (the engine's schedule, whatever the timers' lateness), or now for
        a step that produced none (a prefill chunk)."""
        due, self._due = self._due, None
        if self.model.tokens_per_s_per_sequence is None:
            end = due if due is not None and due > self._open else self._clock()
            self._close(end, tokens, True)

    def _close(self, now: float, tokens: float, busy: bool) -> None:
        duration = now - self._open
        if duration <= 0:
            self._pending_tokens += int(tokens)  # same instant: counted with the next segment
            return
        tokens += self._pending_tokens
        self._pending_tokens = 0
        model, spec = self.model, self.model.spec
        if busy:
            compute_j = tokens * model.joules_per_token
            energy = model.busy_base_w * duration + compute_j
            tensor = min(1.0, compute_j / duration / model.compute_max_w)
            sm, dram = min(1.0, model.sm_floor + tensor), model.dram_busy
        else:
            energy, tensor, sm, dram = spec.idle_w * duration, 0.0, 0.0, 0.0
        capped = energy > spec.tdp_w * duration
        if capped:
            energy = spec.tdp_w * duration
            self._capped_s += duration
        segment = Segment(self._open, now, energy, busy, capped, sm, tensor, dram)
        self._energy_j += energy
        if busy:
            self._last_busy_w = segment.power_w
        self._recent.append(segment)
        while self._recent and self._recent[0].end_s < now - self.window_s:
            self._recent.popleft()
        if self._history is not None:
            self._history.append(segment)
        self._open = now

    # ------------------------------------------------------------------ readings
    def _open_segment(self, now: float) -> Segment | None:
        """The segment in progress, at the power known so far (a step's compute is added
        when the step ends, so a counter read mid-step lags by at most that step's compute)."""
        if now <= self._open:
            return None
        model = self.model
        if self._busy:
            watts, sm, dram = model.busy_base_w, model.sm_floor, model.dram_busy
        else:
            watts, sm, dram = model.spec.idle_w, 0.0, 0.0
        return Segment(self._open, now, watts * (now - self._open), self._busy, False, sm, 0, dram)

    def energy_j(self) -> float:
        """The energy counter now: every closed segment, plus the open one so far."""
        current = self._open_segment(self._clock())
        return self._energy_j + (current.energy_j if current is not None else 0.0)

    def reading(self) -> GpuReading:
        now = self._clock()
        model, spec = self.model, self.model.spec
        current = self._open_segment(now)
        since = max(now - self.window_s, self._started)
        span = now - since
        parts = [*self._recent, *([current] if current is not None else [])]
        sums = {"energy": 0.0, "busy": 0.0, "sm": 0.0, "tensor": 0.0, "dram": 0.0}
        for seg in parts:
            overlap = min(seg.end_s, now) - max(seg.start_s, since)
            if overlap <= 0:
                continue
            share = overlap / (seg.end_s - seg.start_s)
            sums["energy"] += seg.energy_j * share
            sums["busy"] += overlap if seg.busy else 0.0
            sums["sm"] += seg.sm_active * overlap
            sums["tensor"] += seg.tensor_active * overlap
            sums["dram"] += seg.dram_active * overlap
        mean = {key: value / span if span > 0 else 0.0 for key, value in sums.items()}
        average_w = mean["energy"] if span > 0 else spec.idle_w
        if spec.power_window_s > 0:
            power_w = average_w
        else:  # an instantaneous reading: the latest step's power while busy
            power_w = self._last_busy_w if self._busy else spec.idle_w
        used = _RUNTIME_MIB + model.weights_mib + self._kv_tokens * KV_BYTES_PER_TOKEN / _MIB
        used = min(used, spec.memory_total_mib - spec.memory_reserved_mib)
        # the reasons in force now, as DCGM reads them: sampled at random instants, the share
        # of samples that say "power cap" is the share of time the card was capped
        last = self._recent[-1] if self._recent else None
        capped_now = self._busy and last is not None and last.capped
        reasons = (0 if self._busy else _IDLE) | (_POWER_CAP if capped_now else 0)
        return GpuReading(
            power_w=power_w,
            energy_mj=round((self._energy_j + (current.energy_j if current else 0.0)) * 1e3),
            power_limit_w=spec.tdp_w,
            gpu_util_pct=round(100 * mean["busy"]),
            mem_copy_util_pct=round(100 * mean["dram"]),
            gr_engine_active=mean["busy"],
            sm_active=mean["sm"],
            tensor_active=mean["tensor"],
            dram_active=mean["dram"],
            fb_used_mib=round(used),
            fb_free_mib=round(spec.memory_total_mib - spec.memory_reserved_mib - used),
            fb_reserved_mib=spec.memory_reserved_mib,
            temperature_c=round(_AMBIENT_C + _HEAT_C * average_w / spec.tdp_w),
            sm_clock_mhz=spec.sm_clock_max_mhz if self._busy else spec.sm_clock_idle_mhz,
            mem_clock_mhz=spec.mem_clock_mhz,
            clock_event_reasons=reasons,
            power_violation_ns=round(self._capped_s * 1e9),
        )


class GpuTee:
    """An engine observer that passes every hook on to the stack's own observer (its metrics)
    and tells the simulated GPU when work starts, stops and what each step computed."""

    def __init__(self, inner: EngineObserver, gpu: SimulatedGpu) -> None:
        self._inner = inner
        self._gpu = gpu

    def on_queued(self, seq: SimSequence) -> None:
        self._inner.on_queued(seq)

    def on_admitted(self, seq: SimSequence, queue_time_s: float) -> None:
        self._inner.on_admitted(seq, queue_time_s)

    def on_first_token(self, seq: SimSequence, ttft_s: float) -> None:
        self._inner.on_first_token(seq, ttft_s)
        self._gpu.token_due(seq.arrival + ttft_s)

    def on_token(self, seq: SimSequence, gap_s: float) -> None:
        self._inner.on_token(seq, gap_s)
        if seq.last_token is not None:  # the previous token's time, until the engine moves it
            self._gpu.token_due(seq.last_token + gap_s)

    def on_finished(self, seq: SimSequence, reason: FinishReason) -> None:
        self._inner.on_finished(seq, reason)

    def on_preempted(self, seq: SimSequence) -> None:
        self._inner.on_preempted(seq)

    def on_step(self, scheduled_tokens: int) -> None:
        self._inner.on_step(scheduled_tokens)
        self._gpu.step_done(scheduled_tokens)

    def on_gauges(self, running: int, waiting: int, kv_usage: float) -> None:
        self._inner.on_gauges(running, waiting, kv_usage)
        self._gpu.work_changed(running, waiting, kv_usage)
