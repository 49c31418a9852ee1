"""What one generator process may be asked: accuracy bounds (overridable) and memory
(always), checked with a given core count and memory so the test does not depend on the host.
"""

from __future__ import annotations

import pytest

from loadtest.config import LengthDist, LoadConfig, WorkloadConfig
from loadtest.limits import (
    EVENTS_PER_S_PER_PROCESS,
    IN_FLIGHT_BYTES,
    PROCESS_BYTES,
    STREAMS_PER_PROCESS,
    overload_problem,
)

GIB = 2**30
WORKLOAD = WorkloadConfig(output_tokens=LengthDist(mean=100))


def problem(cores: int = 8, memory: int = 64 * GIB, **load: object) -> str | None:
    return overload_problem(
        LoadConfig.model_validate(load), WORKLOAD, cores=cores, available_bytes=memory
    )


def test_loads_within_the_measured_figures_pass() -> None:
    assert problem(stages=[1, 64, STREAMS_PER_PROCESS]) is None
    rate = EVENTS_PER_S_PER_PROCESS / 100  # 100 output tokens each
    assert problem(mode="rate", stages=[rate]) is None
    assert problem(stages=[2 * STREAMS_PER_PROCESS], processes=2) is None
    assert problem(processes=8) is None


@pytest.mark.parametrize(
    ("load", "expected"),
    [
        (
            {"stages": [STREAMS_PER_PROCESS + 1]},
            "load.stages: 257 concurrent requests is 257 streams per generator process, more "
            "than one times accurately (256); set load.processes to at least 2 (this host has "
            "8 cores), or set load.allow_overload: true to run it anyway",
        ),
        (
            {"mode": "rate", "stages": [5, 250]},
            "load.stages: 250 requests/s × 100 output tokens is 25,000 token events/s per "
            "generator process, more than one times accurately (10,000); set load.processes "
            "to at least 3 (this host has 8 cores), or set load.allow_overload: true to run it "
            "anyway",
        ),
        (
            {"mode": "batch", "stages": [4000]},
            "load.stages: 4000 concurrent requests is 4,000 streams per generator process, "
            "more than one times accurately (256); lower the stage (it needs 16 processes; "
            "this host has 8 cores), or set load.allow_overload: true to run it anyway",
        ),
        (
            {"processes": 9},
            "load.processes: 9 generator processes on 8 cores; use at most 8, or set "
            "load.allow_overload: true to run it anyway",
        ),
    ],
)
def test_beyond_accuracy_is_refused_with_what_to_change(load: dict, expected: str) -> None:
    assert problem(**load) == expected
    assert problem(**load, allow_overload=True) is None


def test_memory_bounds_hold_even_when_overload_is_allowed() -> None:
    users = 1e9
    message = problem(stages=[users], allow_overload=True)
    assert message is not None and message.startswith(
        "load: 1 generator process(es) with up to 1,000,000,000 requests in flight each need "
        "about 61,035.3 GiB, more than half of this host's available memory (64.0 GiB): "
        "lower load.processes or load.stages"
    )
    message = problem(processes=100_000, allow_overload=True)
    assert message is not None and "100,000 generator process(es)" in message
    # open loop: what may be in flight is `max_in_flight`, whatever the rate
    assert problem(mode="rate", stages=[1e9], allow_overload=True) is None
    in_flight = 10_000
    need = PROCESS_BYTES + in_flight * IN_FLIGHT_BYTES
    assert problem(mode="rate", stages=[1], max_in_flight=in_flight, memory=2 * need) is None
    tight = problem(mode="rate", stages=[1], max_in_flight=in_flight, memory=2 * need - 2)
    assert tight is not None and "lower load.processes or load.max_in_flight" in tight
