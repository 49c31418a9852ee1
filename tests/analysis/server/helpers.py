"""Stage records for the server-metrics tests."""

from __future__ import annotations

from loadtest.records import StageRecord


def stage(
    target: str, number: int, start_s: float, end_s: float, warmup_s: float = 0.2
) -> StageRecord:
    """A stage whose *measure* window is [start_s, end_s] (the warm-up comes before it)."""
    return StageRecord(
        target=target,
        stage=number,
        mode="concurrency",
        load=4,
        warmup_s=warmup_s,
        start_wall_s=start_s - warmup_s,
        end_wall_s=end_s,
        start_ns=0,
        end_ns=int((end_s - start_s + warmup_s) * 1e9),
    )
