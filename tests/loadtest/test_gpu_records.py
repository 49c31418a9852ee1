"""GPU sample records: a dcgm-exporter page parses into one record per GPU with the exporter's
units, MIG instances are left out, and gpu.jsonl reads back (a torn last line is skipped)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from loadtest.gpu_records import (
    DCGM_FIELDS,
    GPU_FILE,
    THROTTLING,
    GpuSample,
    ThrottleReason,
    read_gpu_samples,
    samples_from_dcgm,
)
from loadtest.records import RecordWriter
from tests.procs import REPO_ROOT

PAGE = Path(__file__).parent / "data" / "dcgm_exporter_page.txt"
COUNTERS = REPO_ROOT / "services/dcgm-exporter/counters.csv"


def _counter_names() -> set[str]:
    with COUNTERS.open() as handle:
        rows = csv.reader(line for line in handle if line.strip() and not line.startswith("#"))
        return {row[0].strip() for row in rows}


def test_page_parses_into_one_sample_per_whole_gpu() -> None:
    samples = samples_from_dcgm(PAGE.read_text(), wall_s=1_800_000_000.5)
    assert [s.gpu for s in samples] == [0, 1], "GPU 2 exports only a MIG instance series"
    busy, idle = samples
    assert busy.source == "dcgm" and not busy.simulated
    assert busy.wall_s == 1_800_000_000.5
    assert busy.uuid == "GPU-5e0c3a8d-9b1f-4c57-a3e2-1f7d2b9c6e01"
    assert busy.name == "NVIDIA H100 80GB HBM3"
    assert busy.power_w == pytest.approx(612.345)
    assert busy.energy_mj == 48213377104
    assert busy.power_limit_w == 700.0
    assert busy.gpu_util_pct == 97 and busy.mem_util_pct == 61
    assert busy.sm_active == pytest.approx(0.871904)
    assert busy.dram_active == pytest.approx(0.704433)
    assert busy.tensor_active == pytest.approx(0.318625)
    assert busy.memory_used_mib == 73056
    assert busy.memory_total_mib == 7513 + 73056 + 519, "free + used + reserved"
    assert busy.temperature_c == 71
    assert busy.sm_clock_mhz == 1755 and busy.mem_clock_mhz == 2619
    assert busy.throttle_reasons == ThrottleReason.SW_POWER_CAP and busy.throttled is True
    assert idle.throttle_reasons == ThrottleReason.GPU_IDLE and idle.throttled is False
    assert idle.power_w == pytest.approx(71.25)


def test_every_parsed_field_is_one_the_exporter_is_told_to_collect() -> None:
    collected = _counter_names()
    legacy = {"DCGM_FI_DEV_CLOCK_THROTTLE_REASONS"}  # old name of DCGM_FI_DEV_CLOCKS_EVENT_REASONS
    assert set(DCGM_FIELDS) - legacy <= collected, sorted(set(DCGM_FIELDS) - legacy - collected)


def test_legacy_throttle_name_and_simulated_label_are_understood() -> None:
    page = (
        "# TYPE DCGM_FI_DEV_CLOCK_THROTTLE_REASONS gauge\n"
        'DCGM_FI_DEV_CLOCK_THROTTLE_REASONS{gpu="3",UUID="GPU-x",simulated="true"} 96\n'
    )
    (sample,) = samples_from_dcgm(page, wall_s=5.0)
    assert sample.gpu == 3 and sample.simulated
    assert sample.throttle_reasons == ThrottleReason.SW_THERMAL | ThrottleReason.HW_THERMAL
    assert sample.power_w is None, "a field the page lacks stays None, never 0"


def test_a_page_that_is_not_exposition_format_raises() -> None:
    with pytest.raises(ValueError):
        samples_from_dcgm('DCGM_FI_DEV_POWER_USAGE{gpu="0" 12\n', wall_s=0.0)


def test_throttling_excludes_idle_and_user_clock_settings() -> None:
    for reason in ThrottleReason:
        calm = {ThrottleReason.GPU_IDLE, ThrottleReason.APPLICATIONS_CLOCKS_SETTING,
                ThrottleReason.SYNC_BOOST, ThrottleReason.DISPLAY_CLOCKS}  # fmt: skip
        assert bool(reason & THROTTLING) == (reason not in calm), reason.name


def test_gpu_jsonl_round_trip_skips_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / GPU_FILE
    writer = RecordWriter(path)
    written = [
        GpuSample(wall_s=10.0 + i, source="nvml", gpu=0, power_w=100.0 + i) for i in range(3)
    ]
    for sample in written:
        writer.write(sample)
    writer.close()
    with path.open("a") as handle:
        handle.write('{"wall_s": 13.0, "source": "nv')  # the sampler was killed mid-write
    assert read_gpu_samples(path) == written


def test_a_bad_line_in_the_middle_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / GPU_FILE
    path.write_text(
        GpuSample(wall_s=1.0, source="nvml", gpu=0).model_dump_json()
        + '\n{"wall_s": 2.0, "source": "nvml", "gpu": 0, "watts": 3}\n'
        + GpuSample(wall_s=3.0, source="nvml", gpu=0).model_dump_json()
        + "\n"
    )
    with pytest.raises(ValueError, match=rf"{GPU_FILE}:2: not a GPU sample"):
        read_gpu_samples(path)
