"""The `make bench` trace figure still runs end to end (on a small trace here)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.trace_memory import describe, measure_trace_memory


def test_trace_memory_measures_a_small_trace(tmp_path: Path) -> None:
    result = measure_trace_memory(rows=2_000, root=tmp_path)
    assert result.rows == 2_000
    assert (
        0 < result.base_mib <= result.read_peak_mib <= result.schedule_peak_mib <= result.peak_mib
    )
    assert result.schedule_s > 0
    assert "2,000 Mooncake rows" in describe(result)
