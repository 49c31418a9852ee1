"""The shipped example traces are exactly what their generator writes, and look like traffic."""

from __future__ import annotations

from pathlib import Path

from benchmarks.trace_synth import write_examples
from loadtest.traces import describe_trace, read_trace
from tests.loadtest.traces.helpers import EXAMPLES


def test_the_shipped_examples_are_what_the_script_makes(tmp_path: Path) -> None:
    for made in write_examples(tmp_path):
        shipped = EXAMPLES / made.name
        assert made.read_bytes() == shipped.read_bytes(), (
            f"{shipped} differs from what benchmarks/trace_synth.py writes: "
            "run `python -m benchmarks.trace_synth --out examples/traces`"
        )


def test_the_synthetic_trace_has_bursts_sessions_and_shared_prefixes() -> None:
    summary = describe_trace(read_trace(EXAMPLES / "synthetic_mooncake.jsonl")).summary
    assert summary.requests > 200
    assert summary.peak_to_mean > 4  # the batch-job bursts
    assert summary.dispersion_index is not None and summary.dispersion_index > 3
    assert summary.sessions is not None and summary.sessions.multi_turn_request_share > 0.3
    assert summary.prefix is not None and summary.prefix.reused_token_share > 0.3
    assert summary.prefix.block_count_mismatches == 0  # hash_ids fit 512-token blocks
