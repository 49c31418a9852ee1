"""The simulated GPU on a scripted clock: idle and saturated power per card, 4-bit against FP16,
the energy counter as the exact integral of the power, memory from weights and KV, and the
tee that feeds it from a real batching engine."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from services.sim import BatchingEngine, SimSettings, load_profile
from services.sim.engine import NullObserver, SimSequence
from services.sim.gpu_power import GpuTee, Segment, SimulatedGpu, power_model
from services.sim.gpu_specs import GPU_SPECS, KV_BYTES_PER_TOKEN


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _gpu(
    stack: str = "vllm", quant: str = "fp16", gpu: str = "h100", **extra: Any
) -> tuple[SimulatedGpu, Clock, list[Segment]]:
    clock, history = Clock(), []
    settings = SimSettings(stack=stack, quant=quant, gpu=gpu, **extra)  # type: ignore[arg-type]
    return SimulatedGpu(power_model(settings), clock, history), clock, history


def _steps(gpu: SimulatedGpu, clock: Clock, seconds: float, step_s: float, tokens: int) -> None:
    """Back-to-back engine steps of `step_s`, `tokens` each, for `seconds`."""
    gpu.work_changed(running=1, waiting=0, kv_usage=0.0)
    end = clock.now + seconds
    while clock.now < end - 1e-9:
        clock.now += step_s
        gpu.step_done(tokens)


@pytest.mark.parametrize("card", ["h100", "a100", "l4"])
def test_an_idle_card_draws_its_idle_power_and_says_it_is_idle(card: str) -> None:
    gpu, clock, _ = _gpu(gpu=card)
    clock.now += 5.0
    reading = gpu.reading()
    spec = GPU_SPECS[card]
    assert reading.power_w == pytest.approx(spec.idle_w)
    assert reading.clock_event_reasons == 0x1 and reading.gpu_util_pct == 0
    assert reading.energy_mj == pytest.approx(spec.idle_w * 5.0 * 1000, abs=1)
    if card != "l4":  # a 72 W card idles far lower
        assert 70 <= spec.idle_w <= 100


@pytest.mark.parametrize("card", ["h100", "a100", "l4"])
def test_compute_bound_prefill_saturates_at_the_cards_limit_and_is_power_capped(
    card: str,
) -> None:
    gpu, clock, _ = _gpu(gpu=card)
    profile = load_profile("vllm", "fp16", card)
    tokens = profile.max_num_batched_tokens  # a full prefill chunk every step
    step_s = (profile.decode_step_base_ms + profile.prefill_ms_per_token * tokens) / 1000
    _steps(gpu, clock, 3.0, step_s, tokens)
    reading = gpu.reading()
    limit = GPU_SPECS[card].tdp_w
    assert 0.9 * limit <= reading.power_w <= limit
    assert reading.power_limit_w == limit
    assert reading.clock_event_reasons & 0x4, "demand above the limit: SW power cap"
    assert reading.power_violation_ns > 0
    # the step is prefill but for its base (weights read once): tensor pipes nearly always on
    assert reading.gpu_util_pct == 100 and reading.tensor_active > 0.85


def _decode(quant: str, batch: int) -> tuple[float, float]:
    """(power W, joules per token) of back-to-back decode steps at `batch` on an H100."""
    stack = "exllamav2" if quant == "exl2" else "vllm"
    gpu, clock, _ = _gpu(stack=stack, quant=quant)
    profile = load_profile(stack, quant, "h100")
    step_s = (profile.decode_step_base_ms + profile.decode_step_per_seq_ms * batch) / 1000
    before = gpu.energy_j()
    _steps(gpu, clock, 2.0, step_s, batch)
    tokens = batch * round(2.0 / step_s)
    return gpu.reading().power_w, (gpu.energy_j() - before) / tokens


def test_four_bit_decode_draws_less_power_and_energy_per_token_than_fp16_at_batch_one() -> None:
    fp16_w, fp16_j = _decode("fp16", 1)
    for quant in ("awq", "gptq", "exl2"):
        watts, joules = _decode(quant, 1)
        # a third of the bytes per step: less memory power, and a shorter step
        assert watts < 0.85 * fp16_w, (quant, watts, fp16_w)
        assert joules < 0.75 * fp16_j, (quant, joules, fp16_j)
    assert 250 <= fp16_w <= 400, "batch-1 FP16 decode on an H100: roughly half its limit"


def test_four_bit_tokens_cost_more_compute_energy_than_fp16() -> None:
    """Dequantisation: per token of compute (prefill), the 4-bit kernels spend more."""
    fp16 = power_model(SimSettings(stack="vllm", quant="fp16"))
    for quant in ("awq", "gptq"):
        assert power_model(SimSettings(stack="vllm", quant=quant)).joules_per_token > (
            fp16.joules_per_token
        )


def test_power_rises_with_the_batch_and_stays_under_the_limit() -> None:
    powers = [_decode("awq", batch)[0] for batch in (1, 16, 64, 256)]
    assert powers == sorted(powers), powers
    assert powers[-1] <= GPU_SPECS["h100"].tdp_w


def test_the_energy_counter_is_the_integral_of_the_power() -> None:
    gpu, clock, history = _gpu(quant="awq")
    readings = []
    for pattern in ((0.0, 0), (0.02, 64), (0.0, 0), (0.4, 4096), (0.006, 1)):
        step_s, tokens = pattern
        if step_s == 0:
            gpu.work_changed(0, 0, 0.0)
            clock.now += 1.5
        else:
            _steps(gpu, clock, 1.5, step_s, tokens)
        readings.append((clock.now, gpu.reading()))
    gpu.work_changed(0, 0, 0.0)
    exact_j = sum(segment.energy_j for segment in history)
    assert gpu.energy_j() == pytest.approx(exact_j, rel=1e-12)
    assert all(b.start_s == a.end_s for a, b in itertools.pairwise(history))
    counters = [r.energy_mj for _, r in readings]
    assert counters == sorted(counters), "the counter never goes down"
    for (t0, _), (t1, r1) in itertools.pairwise(readings):
        assert t1 - t0 >= gpu.window_s
        # the reading is the mean power of the last second, i.e. the counter's slope there
        window = [s for s in history if s.end_s > t1 - 1.0 and s.start_s < t1]
        mean_w = sum(
            s.energy_j * (min(s.end_s, t1) - max(s.start_s, t1 - 1.0)) / (s.end_s - s.start_s)
            for s in window
        )
        assert r1.power_w == pytest.approx(mean_w, rel=1e-9)


def test_memory_used_is_runtime_weights_and_the_kv_in_use() -> None:
    gpu, _, _ = _gpu(quant="awq")
    idle = gpu.reading().fb_used_mib
    gpu.work_changed(running=8, waiting=0, kv_usage=0.25)
    busy = gpu.reading()
    kv_tokens = 0.25 * load_profile("vllm", "awq", "h100").kv_cache_tokens
    assert busy.fb_used_mib - idle == pytest.approx(kv_tokens * KV_BYTES_PER_TOKEN / 2**20, abs=1)
    fp16_idle = _gpu(quant="fp16")[0].reading().fb_used_mib
    assert fp16_idle - idle == pytest.approx((16.0e9 - 5.7e9) / 2**20, abs=1)
    spec = GPU_SPECS["h100"]
    assert busy.fb_used_mib + busy.fb_free_mib + busy.fb_reserved_mib == spec.memory_total_mib


def test_the_tee_feeds_the_gpu_from_a_real_batching_engine(fake_clock: Any) -> None:
    settings = SimSettings(stack="vllm", quant="awq")
    history: list[Segment] = []
    gpu = SimulatedGpu(power_model(settings), fake_clock, history)
    steps: list[int] = []

    class Inner(NullObserver):
        def on_step(self, scheduled_tokens: int) -> None:
            steps.append(scheduled_tokens)

    async def main() -> None:
        profile = load_profile("vllm", "awq", "h100")
        engine = BatchingEngine(
            profile, GpuTee(Inner(), gpu), clock=fake_clock, sleep=fake_clock.sleep
        )
        seqs = [engine.submit(200, 32) for _ in range(8)]
        for seq in seqs:
            async for _ in seq:
                pass
        await engine.aclose()

    asyncio.run(main())
    model = power_model(settings)
    busy = [s for s in history if s.busy]
    assert sum(steps) == 8 * (200 + 32) - 8, "prefill plus decode tokens, the inner observer too"
    assert len(busy) == len(steps), "one segment per engine step"
    compute_j = sum(s.energy_j - model.busy_base_w * (s.end_s - s.start_s) for s in busy)
    assert compute_j == pytest.approx(sum(steps) * model.joules_per_token, rel=1e-9)
    assert not history[-1].busy or gpu.reading().clock_event_reasons & 0x1


def test_speed_scales_time_not_power() -> None:
    slow, slow_clock, _ = _gpu(quant="awq")
    fast, fast_clock, _ = _gpu(quant="awq", speed=10.0)
    profile = load_profile("vllm", "awq", "h100")
    step_s = (profile.decode_step_base_ms + profile.decode_step_per_seq_ms * 32) / 1000
    _steps(slow, slow_clock, 2.0, step_s, 32)
    _steps(fast, fast_clock, 2.0, step_s / 10, 32)
    assert fast.reading().power_w == pytest.approx(slow.reading().power_w, rel=1e-6)


def test_steps_end_on_the_engines_schedule_not_when_a_late_timer_fires() -> None:
    """On a busy host the step loop wakes late, then early; the card follows the engine's
    own due times, so a late wake-up never squeezes a step into a spike of power."""
    gpu, clock, history = _gpu(quant="awq")
    tee = GpuTee(NullObserver(), gpu)
    tee.on_gauges(running=4, waiting=0, kv_usage=0.0)
    start = clock.now
    seqs = [SimSequence(i, 100, 64, arrival=start) for i in range(4)]
    for k in range(1, 41):
        due = start + 0.010 * k
        clock.now = due + (0.008 if k % 2 else 0.0)  # every other wake-up 8 ms late
        for seq in seqs:
            if seq.last_token is None:
                tee.on_first_token(seq, due - seq.arrival)
            else:
                tee.on_token(seq, due - seq.last_token)
            seq.last_token = due
        tee.on_step(len(seqs))
    busy = [s for s in history if s.busy]
    assert [round(s.end_s - s.start_s, 9) for s in busy[1:]] == [0.01] * (len(busy) - 1)
    assert not any(s.capped for s in busy)
