"""What one load-generator process can be asked to do, checked when a config is validated.

The figures are measured (`make bench`, README "Client accuracy" and "Limits"): one process
times ~10,000 token events/s accurately and 256 concurrent streams at 10 ms per token use
about 70% of its core; each request in flight costs it ~34 KiB (greenlet, connection,
buffers, record), each process ~90 MB. A stage beyond the accuracy figures is refused with
what to change (`processes:`), unless `load.allow_overload: true` says the user knows; the
memory bound (in-flight requests and processes against this host's available memory) holds
even then, so a typo such as `stages: [1e9]` cannot take the host's memory.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING

import psutil

if TYPE_CHECKING:  # config.py validates with these checks; they only read its models
    from loadtest.config import LoadConfig, WorkloadConfig

__all__ = [
    "EVENTS_PER_S_PER_PROCESS",
    "IN_FLIGHT_BYTES",
    "PROCESS_BYTES",
    "STREAMS_PER_PROCESS",
    "accurate_rate_limit",
    "generator_cores",
    "overload_problem",
    "replay_problem",
]

EVENTS_PER_S_PER_PROCESS = 10_000  # token events/s one process times accurately
STREAMS_PER_PROCESS = 256  # concurrent streams (closed loop, batch) one process times
IN_FLIGHT_BYTES = 64 * 1024  # per request in flight, rounded up from ~34 KiB measured
PROCESS_BYTES = 128 * 1024 * 1024  # per generator process, rounded up from ~90 MB measured
_MEMORY_SHARE = 0.5  # of the host's available memory the generator may plan to use


def generator_cores() -> int:
    """Cores this process may run on (a container's or taskset's share, not the host's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def accurate_rate_limit(load: LoadConfig, workload: WorkloadConfig) -> float | None:
    """The highest request rate the generator processes time accurately (None when
    `allow_overload`): a search never offers more."""
    if load.allow_overload:
        return None
    return EVENTS_PER_S_PER_PROCESS * load.processes / workload.output_tokens.mean


def _in_flight_per_process(load: LoadConfig) -> float:
    if load.mode in ("rate", "replay", "search"):
        return float(load.max_in_flight)
    if load.sweep is not None:
        return max(float(load.max_in_flight), load.sweep.max_concurrency / load.processes)
    return max(load.stages) / load.processes


def _advice(need: float, cores: int) -> str:
    if need <= cores:
        return f"set load.processes to at least {need:.0f} (this host has {cores} cores)"
    return f"lower the stage (it needs {need:,.0f} processes; this host has {cores} cores)"


def _accuracy_problem(load: LoadConfig, workload: WorkloadConfig, cores: int) -> str | None:
    top = max(load.stages) if load.sweep is None else float(load.sweep.max_concurrency)
    if load.processes > cores:
        return (
            f"load.processes: {load.processes} generator processes on {cores} cores; "
            f"use at most {cores}"
        )
    if load.mode == "replay":
        return None  # the trace sets the rate: `replay_problem`, once it has been read
    if load.mode == "search":
        return None  # its rates are chosen as it goes, each under `accurate_rate_limit`
    if load.mode == "rate":
        tokens = workload.output_tokens.mean
        events = top * tokens / load.processes
        if events > EVENTS_PER_S_PER_PROCESS:
            return (
                f"load.stages: {top:g} requests/s × {tokens:g} output tokens is {events:,.0f} "
                f"token events/s per generator process, more than one times accurately "
                f"({EVENTS_PER_S_PER_PROCESS:,}); "
                + _advice(-(-top * tokens // EVENTS_PER_S_PER_PROCESS), cores)
            )
        return None
    streams = top / load.processes
    if streams > STREAMS_PER_PROCESS:
        return (
            f"load.stages: {top:g} concurrent requests is {streams:,.0f} streams per generator "
            f"process, more than one times accurately ({STREAMS_PER_PROCESS}); "
            + _advice(-(-top // STREAMS_PER_PROCESS), cores)
        )
    return None


def _memory_problem(load: LoadConfig, available_bytes: int) -> str | None:
    in_flight = _in_flight_per_process(load)
    planned = load.processes * (PROCESS_BYTES + in_flight * IN_FLIGHT_BYTES)
    budget = available_bytes * _MEMORY_SHARE
    if planned <= budget:
        return None
    open_loop = load.mode in ("rate", "replay")
    fields = "load.processes or load." + ("max_in_flight" if open_loop else "stages")
    return (
        f"load: {load.processes:,} generator process(es) with up to {math.ceil(in_flight):,} "
        f"requests in flight each need about {planned / 2**30:,.1f} GiB, more than half of "
        f"this host's available memory ({available_bytes / 2**30:,.1f} GiB): lower {fields}"
    )


def overload_problem(
    load: LoadConfig,
    workload: WorkloadConfig,
    *,
    cores: int | None = None,
    available_bytes: int | None = None,
) -> str | None:
    """Why this load is more than the generator can do (one line naming the field), or None."""
    if available_bytes is None:
        available_bytes = int(psutil.virtual_memory().available)
    memory = _memory_problem(load, available_bytes)
    if memory is not None:
        return memory
    if load.allow_overload:
        return None
    problem = _accuracy_problem(load, workload, cores or generator_cores())
    if problem is None:
        return None
    return f"{problem}, or set load.allow_overload: true to run it anyway"


def replay_problem(
    load: LoadConfig, rate_per_s: float, output_tokens: float, *, cores: int | None = None
) -> str | None:
    """Why replaying a trace of mean `rate_per_s` requests/s and `output_tokens` mean output
    tokens at the top stage's multiplier is more than the generator times accurately."""
    if load.allow_overload:
        return None
    top = max(load.stages)
    events = rate_per_s * top * output_tokens / load.processes
    if events <= EVENTS_PER_S_PER_PROCESS:
        return None
    need = -(-rate_per_s * top * output_tokens // EVENTS_PER_S_PER_PROCESS)
    return (
        f"load.stages: the trace at {top:g}× its mean rate ({rate_per_s * top:,.1f} requests/s × "
        f"{output_tokens:,.0f} output tokens) is {events:,.0f} token events/s per generator "
        f"process, more than one times accurately ({EVENTS_PER_S_PER_PROCESS:,}); "
        + _advice(need, cores or generator_cores())
        + ", or set load.allow_overload: true to run it anyway"
    )
