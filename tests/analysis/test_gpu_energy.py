"""Stage energy from GPU samples: the integral of a known power curve within the sampling
interval's error bound, the energy counter agreeing with the integral, throttled time, and the
per-token figures. Synthetic samples: the curves and their exact integrals are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis.gpu_energy import per_work, stage_gpu, sum_gpus
from loadtest.gpu_records import GpuSample, ThrottleReason

H = 0.5  # sampling interval, s
T0 = 1_800_000_000.0  # a Unix time, as samples carry


def _sine_w(t: np.ndarray) -> np.ndarray:
    """300 W +- 200 W with a 20 s period: a load that ramps up and down."""
    return 300 + 200 * np.sin(2 * math.pi * t / 20)


def _sine_j(t: float) -> float:
    """The exact integral of _sine_w from 0 to t."""
    return 300 * t - 200 * 20 / (2 * math.pi) * (math.cos(2 * math.pi * t / 20) - 1)


def _samples(
    times: np.ndarray, watts: np.ndarray, energy_mj: np.ndarray | None = None, gpu: int = 0
) -> list[GpuSample]:
    return [
        GpuSample(
            wall_s=T0 + float(t),
            source="nvml",
            gpu=gpu,
            power_w=float(w),
            energy_mj=None if energy_mj is None else float(energy_mj[i]),
        )
        for i, (t, w) in enumerate(zip(times, watts, strict=True))
    ]


def test_integral_of_a_smooth_curve_is_within_the_trapezoid_bound() -> None:
    times = np.arange(0, 60 + H, H)
    start, end = 3.3, 47.9  # stage edges between samples
    figures = stage_gpu(_samples(times, _sine_w(times)), T0 + start, T0 + end, gpu=0)
    exact = _sine_j(end) - _sine_j(start)
    # Trapezoid error <= (T / 12) h^2 max|P''|; P'' = 200 (2 pi / 20)^2 at most.
    bound = (end - start) / 12 * H**2 * 200 * (2 * math.pi / 20) ** 2
    assert figures.energy_method == "integral"
    assert figures.energy_j is not None
    assert abs(figures.energy_j - exact) <= bound, (figures.energy_j, exact, bound)
    assert figures.mean_power_w == pytest.approx(exact / (end - start), rel=bound / exact)
    assert figures.samples == len([t for t in times if start <= t <= end])
    assert figures.covered_s == pytest.approx(end - start)
    assert figures.peak_power_w == pytest.approx(500, abs=200 * (1 - math.cos(math.pi * H / 20)))


def test_a_power_step_between_samples_costs_at_most_half_an_interval() -> None:
    """A stage starts: power jumps from 80 W to 620 W at an instant no sample sees."""
    jump_at, before_w, after_w = 10.37, 80.0, 620.0
    times = np.arange(0, 30 + H, H)
    watts = np.where(times < jump_at, before_w, after_w)
    start, end = 5.0, 25.0
    figures = stage_gpu(_samples(times, watts), T0 + start, T0 + end, gpu=0)
    exact = (jump_at - start) * before_w + (end - jump_at) * after_w
    assert figures.energy_j is not None
    assert abs(figures.energy_j - exact) <= H * (after_w - before_w) / 2
    assert figures.peak_power_w == after_w


def test_energy_counter_and_integral_agree() -> None:
    times = np.arange(0, 60 + H, H)
    counter_mj = 5e9 + np.array([_sine_j(t) for t in times]) * 1000  # the driver's counter
    start, end = 3.3, 47.9
    samples = _samples(times, _sine_w(times), counter_mj)
    from_counter = stage_gpu(samples, T0 + start, T0 + end, gpu=0)
    integral = stage_gpu(_samples(times, _sine_w(times)), T0 + start, T0 + end, gpu=0)
    exact = _sine_j(end) - _sine_j(start)
    assert from_counter.energy_method == "counter"
    assert from_counter.energy_j is not None and integral.energy_j is not None
    # The counter is interpolated only at the two edges: error <= 2 * h^2 / 8 * max|P'|.
    edge_bound = 2 * H**2 / 8 * 200 * 2 * math.pi / 20
    trapezoid_bound = (end - start) / 12 * H**2 * 200 * (2 * math.pi / 20) ** 2
    assert abs(from_counter.energy_j - exact) <= edge_bound
    assert abs(from_counter.energy_j - integral.energy_j) <= edge_bound + trapezoid_bound


def test_a_counter_that_went_down_falls_back_to_the_integral() -> None:
    times = np.arange(0, 10 + H, H)
    counter = np.full(times.shape, 1e9) + times * 300_000
    counter[8:] -= 1e9  # the driver was reloaded
    figures = stage_gpu(_samples(times, np.full(times.shape, 300.0), counter), T0 + 1, T0 + 9, 0)
    assert figures.energy_method == "integral"
    assert figures.energy_j == pytest.approx(8 * 300.0)


def test_a_window_not_bracketed_by_the_counter_uses_the_integral_and_says_so() -> None:
    times = np.arange(2, 10 + H, H)  # sampling began 2 s into the stage
    counter = 1e9 + times * 250_000
    figures = stage_gpu(_samples(times, np.full(times.shape, 250.0), counter), T0, T0 + 8, 0)
    assert figures.energy_method == "integral"
    assert figures.covered_s == pytest.approx(6.0), "2 s of the window held from a sample"
    assert figures.energy_j == pytest.approx(8 * 250.0)


def test_throttled_time_holds_each_samples_reasons_until_the_next() -> None:
    reasons = {
        0.0: ThrottleReason.GPU_IDLE,
        4.0: ThrottleReason.SW_POWER_CAP,
        7.0: 0,
        9.0: ThrottleReason.HW_THERMAL | ThrottleReason.GPU_IDLE,
    }
    samples = [
        GpuSample(wall_s=T0 + t, source="dcgm", gpu=1, power_w=100.0, throttle_reasons=int(r))
        for t, r in reasons.items()
    ]
    figures = stage_gpu(samples, T0 + 2.0, T0 + 10.0, gpu=1)
    assert figures.throttled_s == pytest.approx(3.0 + 1.0), "4..7 power cap, 9..10 thermal"
    assert figures.throttled is True
    assert figures.throttle_reasons == (
        ThrottleReason.SW_POWER_CAP | ThrottleReason.HW_THERMAL | ThrottleReason.GPU_IDLE
    )
    idle = stage_gpu(samples, T0 + 0.5, T0 + 3.5, gpu=1)
    assert idle.throttled_s == 0.0 and idle.throttled is False


def test_only_the_asked_gpu_counts_and_a_gpu_without_power_has_none() -> None:
    times = np.arange(0, 10 + H, H)
    samples = _samples(times, np.full(times.shape, 400.0), gpu=0)
    samples += _samples(times, np.full(times.shape, 90.0), gpu=1)
    samples += [GpuSample(wall_s=T0 + 1, source="nvml", gpu=2, memory_used_mib=10.0)]
    assert stage_gpu(samples, T0 + 1, T0 + 9, gpu=1).energy_j == pytest.approx(8 * 90.0)
    blind = stage_gpu(samples, T0 + 0, T0 + 9, gpu=2)
    assert blind.energy_j is None and blind.mean_power_w is None and blind.peak_power_w is None
    assert blind.peak_memory_used_mib == 10.0
    assert per_work(blind, output_tokens=100, requests=2).energy_per_output_token_j is None


def test_per_token_and_per_request_figures() -> None:
    times = np.arange(0, 10 + H, H)
    figures = stage_gpu(_samples(times, np.full(times.shape, 500.0)), T0, T0 + 10, gpu=0)
    work = per_work(figures, output_tokens=20_000, requests=80)
    assert work.energy_per_output_token_j == pytest.approx(5000 / 20_000)
    assert work.energy_per_request_j == pytest.approx(5000 / 80)
    assert work.output_tokens_per_j == pytest.approx(20_000 / 5000)
    idle = per_work(figures, output_tokens=0, requests=0)
    assert (idle.energy_per_output_token_j, idle.energy_per_request_j) == (None, None)
    assert idle.output_tokens_per_j == 0.0, "energy spent on nothing: zero tokens per joule"


def test_two_gpus_of_one_target_add_up() -> None:
    times = np.arange(0, 10 + H, H)
    samples = _samples(times, np.full(times.shape, 300.0), gpu=0)
    samples += _samples(times, np.full(times.shape, 200.0), gpu=1)
    both = sum_gpus([stage_gpu(samples, T0 + 1, T0 + 9, gpu=g) for g in (0, 1)])
    assert both.gpus == (0, 1)
    assert both.energy_j == pytest.approx(8 * 500.0)
    assert both.mean_power_w == pytest.approx(500.0)
    with pytest.raises(ValueError, match="different windows"):
        sum_gpus([stage_gpu(samples, T0 + 1, T0 + 9, 0), stage_gpu(samples, T0 + 2, T0 + 9, 1)])


def test_an_empty_window_is_an_error() -> None:
    with pytest.raises(ValueError, match="empty stage window"):
        stage_gpu([], T0 + 5, T0 + 5, gpu=0)
