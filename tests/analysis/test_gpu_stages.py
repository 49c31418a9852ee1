"""Per-stage GPU figures against the simulator's own power model: a simulated card worked
through idle, a decode stage and a prefill-heavy stage on a scripted clock, its exporter page
scraped every `h` seconds (jittered) and parsed as a run records it. The stage's energy must
equal the exact integral of the model's power over the measured window within the error the
scrape interval allows (docs/telemetry.md), by the energy counter and by the power integral;
J per token, throttling and a container's restart follow."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from analysis.config import SloConfig
from analysis.container_stages import container_changes
from analysis.gpu_stages import Telemetry, add_telemetry_columns, stage_figures
from analysis.summary import TargetInfo, summarize
from loadtest.container_records import ContainerSample
from loadtest.gpu_records import GpuSample, samples_from_dcgm
from loadtest.records import StageRecord
from services.sim import SimSettings, load_profile
from services.sim.dcgm_page import gpu_labels, render_page
from services.sim.gpu_power import Segment, SimulatedGpu, power_model

T0 = 1_800_000_000.0
WARMUP = 2.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@dataclass
class Simulated:
    samples: list[GpuSample]
    history: list[Segment]
    stages: list[StageRecord]
    tokens: dict[int, int]  # stage -> tokens computed in its measured window
    window_s: float


def _stage(stage: int, start: float, end: float) -> StageRecord:
    return StageRecord(
        target="t", stage=stage, mode="concurrency", load=8.0 * (stage + 1), warmup_s=WARMUP,
        start_wall_s=start, end_wall_s=end, start_ns=int((start - T0) * 1e9),
        end_ns=int((end - T0) * 1e9),
    )  # fmt: skip


def _simulate(h: float, seed: int, quant: str = "fp16") -> Simulated:
    """idle 5 s; stage 0 (12 s) decode at batch 8; stage 1 (12 s) one 2048-token prefill
    chunk every fourth step beside decode at batch 64; idle 5 s. Scraped every h ± 10%."""
    settings = SimSettings(stack="vllm", quant=quant)
    profile = load_profile("vllm", quant, "h100")
    clock, history = Clock(), []
    gpu = SimulatedGpu(power_model(settings), clock, history)
    labels = gpu_labels(settings, gpu.model.spec.model_name)
    rng = np.random.default_rng(seed)
    stages = [_stage(0, T0 + 5, T0 + 17), _stage(1, T0 + 17, T0 + 29)]
    tokens = {0: 0, 1: 0}
    samples: list[GpuSample] = []
    next_sample = T0 + h * rng.uniform(0.0, 1.0)

    def advance(to: float) -> None:
        nonlocal next_sample
        while next_sample <= to:
            clock.now = next_sample
            text = render_page(gpu.reading(), labels)
            (sample,) = samples_from_dcgm(text, next_sample)
            samples.append(sample.model_copy(update={"target": "t"}))
            next_sample += h * rng.uniform(0.9, 1.1)
        clock.now = to

    advance(T0 + 5)
    for stage in stages:
        gpu.work_changed(running=8, waiting=0, kv_usage=0.01)
        step = 0
        while True:
            batch = 8 if stage.stage == 0 else 64
            prefill = 2048 if stage.stage == 1 and step % 4 == 0 else 0
            ms = profile.decode_step_base_ms + profile.decode_step_per_seq_ms * batch
            end = clock.now + (ms + profile.prefill_ms_per_token * prefill) / 1000
            if end > stage.end_wall_s:
                break
            advance(end)
            gpu.step_done(batch + prefill)
            if end > stage.start_wall_s + WARMUP:
                tokens[stage.stage] += batch + prefill
            step += 1
        advance(stage.end_wall_s)
    gpu.work_changed(running=0, waiting=0, kv_usage=0.0)
    advance(T0 + 34)
    return Simulated(samples, history, stages, tokens, gpu.window_s)


def _exact_j(history: list[Segment], start: float, end: float) -> float:
    """The model's own energy over [start, end]: its segments, pro rata."""
    total = 0.0
    for seg in history:
        overlap = min(seg.end_s, end) - max(seg.start_s, start)
        if overlap > 0:
            total += seg.energy_j * overlap / (seg.end_s - seg.start_s)
    return total


def _swing_w(history: list[Segment], start: float, end: float) -> float:
    """How far the model's power moved within [start, end]."""
    powers = [s.power_w for s in history if s.end_s > start and s.start_s < end]
    return max(powers) - min(powers) if powers else 0.0


def _summary(sim: Simulated) -> pd.DataFrame:
    return pd.DataFrame(
        [{"target": "t", "stage": s, "output_tokens": n, "ok": 100} for s, n in sim.tokens.items()]
    )


@pytest.mark.parametrize("h", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("seed", [1, 2])
def test_stage_energy_is_the_integral_of_the_simulated_power_within_the_scrape_error(
    h: float, seed: int
) -> None:
    sim = _simulate(h, seed)
    step_compute_j = power_model(SimSettings()).joules_per_token * (2048 + 64)
    for method in ("counter", "integral"):
        samples = sim.samples
        if method == "integral":  # as from nvidia-smi: power readings only
            samples = [s.model_copy(update={"energy_mj": None}) for s in samples]
        figures = stage_figures(Telemetry(gpu=samples), sim.stages, _summary(sim))
        for stage, row in zip(sim.stages, figures.to_dict("records"), strict=True):
            start, end = stage.start_wall_s + WARMUP, stage.end_wall_s
            exact = _exact_j(sim.history, start, end)
            assert row["gpu_energy_method"] == method
            # Each edge: the counter is interpolated between the samples around it (at most
            # gap/4 x the power swing there, gaps up to 1.1 h) and lags a step's compute when
            # read mid-step. The power integral also sees each reading averaged over the last
            # second, which moves energy across an edge by up to (window/2) x the swing.
            if method == "counter":
                reach, share = h, 1.1 / 4
            else:
                reach, share = h + sim.window_s, 0.5
            bound = (
                sum(
                    share * reach * _swing_w(sim.history, edge - reach, edge + h)
                    for edge in (start, end)
                )
                + 2 * step_compute_j
            )
            error = row["gpu_energy_j"] - exact
            assert abs(error) <= bound, (method, h, stage.stage, error, bound, exact)
            assert row["gpu_mean_power_w"] == pytest.approx(row["gpu_energy_j"] / (end - start))
            tokens = sim.tokens[stage.stage]
            assert row["gpu_j_per_output_token"] == pytest.approx(row["gpu_energy_j"] / tokens)
            assert row["gpu_output_tokens_per_j"] == pytest.approx(tokens / row["gpu_energy_j"])
            assert row["gpu_j_per_request"] == pytest.approx(row["gpu_energy_j"] / 100)


def test_the_counter_is_exact_away_from_the_edges() -> None:
    """Between two samples the counter's difference is the model's energy to the joule: the
    scrape interval only costs at the window's edges, where power changes."""
    sim = _simulate(1.0, 3)
    a, b = sim.samples[8], sim.samples[20]
    assert a.energy_mj is not None and b.energy_mj is not None
    exact = _exact_j(sim.history, a.wall_s, b.wall_s)
    lag = power_model(SimSettings()).joules_per_token * (2048 + 64)
    assert (b.energy_mj - a.energy_mj) / 1000 == pytest.approx(exact, abs=2 * lag + 0.002)


def test_prefill_heavy_stage_is_flagged_throttled_and_the_decode_stage_is_not() -> None:
    sim = _simulate(0.5, 4)
    figures = stage_figures(Telemetry(gpu=sim.samples), sim.stages, _summary(sim))
    decode, heavy = figures.to_dict("records")
    assert decode["gpu_throttled"] is False and decode["gpu_throttled_s"] == 0
    capped = sum(s.end_s - s.start_s for s in sim.history if s.capped)
    assert capped > 0, "2048-token prefill steps of FP16 on an H100 exceed its 700 W"
    assert heavy["gpu_throttled"] is True and heavy["gpu_throttled_s"] > 0
    assert heavy["gpu_mean_power_w"] > decode["gpu_mean_power_w"]
    assert heavy["gpu_peak_power_w"] <= 700.0


def test_awq_spends_less_energy_per_decode_token_than_fp16() -> None:
    fp16, awq = _simulate(1.0, 5, "fp16"), _simulate(1.0, 5, "awq")
    rows = {
        name: stage_figures(Telemetry(gpu=sim.samples), sim.stages, _summary(sim)).iloc[0]
        for name, sim in (("fp16", fp16), ("awq", awq))
    }
    assert rows["awq"]["gpu_j_per_output_token"] < 0.8 * rows["fp16"]["gpu_j_per_output_token"]
    assert rows["awq"]["gpu_memory_used_mib"] < rows["fp16"]["gpu_memory_used_mib"] - 9000


def test_summary_columns_are_empty_without_samples_and_numeric_with() -> None:
    sim = _simulate(1.0, 6)
    summary = _summary(sim)
    bare = add_telemetry_columns(summary, Telemetry(), sim.stages)
    assert bare["gpu_energy_j"].isna().all() and (bare["gpu_source"] == "").all()
    filled = add_telemetry_columns(summary, Telemetry(gpu=sim.samples), sim.stages)
    assert filled["gpu_energy_j"].dtype == float and filled["gpu_energy_j"].notna().all()
    assert (filled["gpu_source"] == "simulated-dcgm").all()


# ------------------------------------------------------------------ containers
def _container(wall_s: float, **state: object) -> ContainerSample:
    base: dict[str, object] = {
        "target": "t", "service": "vllm-awq", "wall_s": wall_s, "container_id": "c1",
        "name": "quantbench-vllm-awq-1", "status": "running", "started_at": "s0",
        "started_wall_s": T0 - 100, "memory_used_bytes": 2**30, "cpu_total_ns": int(wall_s * 1e9),
    }  # fmt: skip
    return ContainerSample.model_validate(base | state)


def test_a_restart_invalidates_the_stage_it_fell_in_and_only_that_one() -> None:
    restarted = {"restart_count": 1, "started_at": "s1", "started_wall_s": T0 + 17.4}
    samples = [_container(T0 + t) for t in (4.0, 10.0, 16.9)]
    samples += [_container(T0 + t, **restarted) for t in (17.5, 24.0, 29.5)]
    stages = [_stage(0, T0 + 5, T0 + 17), _stage(1, T0 + 17, T0 + 29)]
    found = container_changes(samples, stages)
    assert found == {("t", 1): "container quantbench-vllm-awq-1 restarted (restart count 0 -> 1)"}


def test_an_oom_kill_invalidates_its_stage_in_the_summary() -> None:
    samples = [_container(T0 + t) for t in (4.0, 10.0, 16.9, 20.0)]
    samples += [_container(T0 + 25.0, oom_killed=True, status="exited", exit_code=137)]
    stages = [_stage(0, T0 + 5, T0 + 17), _stage(1, T0 + 17, T0 + 29)]
    changes = container_changes(samples, stages)
    assert changes == {("t", 1): "container quantbench-vllm-awq-1 was OOM-killed"}
    requests = pd.DataFrame(
        [
            {"target": "t", "stage": s, "warmup": False, "outcome": "ok", "output_tokens": 10,
             "prompt_tokens": 5, "ttft_ms": 10.0, "tpot_ms": 1.0, "e2e_ms": 20.0,
             "schedule_lag_ms": 0.0, "itl_ms": [1.0]}
            for s in (0, 1) for _ in range(80)
        ]
    )  # fmt: skip
    summary = summarize(
        requests, stages, {"t": TargetInfo("t", "vllm", "awq", False)}, SloConfig(),
        containers=changes,
    )  # fmt: skip
    assert summary["valid"].tolist() == [True, False]
    assert summary["invalid_reason"].iloc[1] == "container quantbench-vllm-awq-1 was OOM-killed"


def test_container_cpu_and_memory_per_stage() -> None:
    samples = [
        _container(
            T0 + t, cpu_total_ns=int(2.5e9 * t), memory_used_bytes=int((1 + t / 100) * 2**30)
        )
        for t in np.arange(0.0, 34.0, 0.5)
    ]
    sim = _simulate(1.0, 7)
    figures = stage_figures(Telemetry(containers=samples), sim.stages, _summary(sim))
    for row, stage in zip(figures.to_dict("records"), sim.stages, strict=True):
        assert row["container_cpu_cores"] == pytest.approx(2.5)
        start, end = stage.start_wall_s + WARMUP - T0, stage.end_wall_s - T0
        assert row["container_memory_peak_mib"] == pytest.approx(1024 * (1 + end / 100))
        assert 1024 * (1 + start / 100) < row["container_memory_mib"] < 1024 * (1 + end / 100)
