"""`make bench`: speed and accuracy figures, printed (never pass/fail unit tests).

1. Simulator speed: 256 concurrent streams on one simulator process: tokens/s and the p99
   lateness of tokens against their simulated due times (benchmarks/sim_speed.py).
2. Client accuracy: 64 closed-loop streams of 128 tokens at 10 ms per token; TTFT and ITL
   as the client saw them minus the simulator's own write times, for quantbench's Locust
   generator (one process) and a plain asyncio + aiohttp client in the same run
   (benchmarks/accuracy.py); then the same at 256 streams, with the generator's CPU, to show
   where one generator process stops being accurate.
3. Generator memory: resident memory of one Locust process per request in flight, closed
   and open loop, against the figure the config's bounds assume (benchmarks/generator_memory.py).
4. Report speed: `quantbench report` in a child process on a synthetic run of 1,000,000
   records (~64-token ITL lists, 5 targets × 4 stages): wall seconds and peak memory
   (benchmarks/report_speed.py).
5. Trace replay input: a 1,000,000-row Mooncake trace read, walked request by request and
   described in a child process: seconds and peak memory (benchmarks/trace_memory.py).
6. Quality probe: a 50,000-token text and 50 greedy prompts against three simulated targets:
   seconds per target (benchmarks/quality_speed.py).
7. Regression gate: `quantbench compare` on two synthetic runs of 1,000,000 records each:
   wall and CPU seconds, peak memory (benchmarks/compare_speed.py).
"""

from __future__ import annotations

import argparse

from benchmarks.accuracy import measure_accuracy
from benchmarks.compare_speed import describe as describe_compare
from benchmarks.compare_speed import measure_compare_speed
from benchmarks.generator_memory import measure_generator_memory
from benchmarks.quality_speed import describe as describe_quality
from benchmarks.quality_speed import measure_quality_speed
from benchmarks.report_speed import describe, measure_report_speed
from benchmarks.sim_speed import measure_sim_speed
from benchmarks.trace_memory import describe as describe_trace_memory
from benchmarks.trace_memory import measure_trace_memory
from loadtest.limits import IN_FLIGHT_BYTES, PROCESS_BYTES


def sim_speed(streams: int, itl_ms: float, seconds: float) -> None:
    result = measure_sim_speed(streams, itl_ms, seconds)
    print(
        f"\nsimulator speed (one process, fixed timing, {itl_ms:g} ms per token): "
        f"{result.streams} streams, {result.tokens_per_s:,.0f} tokens/s, "
        f"token lateness p50 {result.lateness_p50_ms:.2f} ms, p99 {result.lateness_p99_ms:.2f} ms "
        f"(target: >= 20,000 tokens/s, p99 < 5 ms), simulator CPU {result.sim_cpu_percent:.0f}%"
    )


def client_accuracy(streams: int, seconds: float, note: str) -> None:
    print(
        f"\nclient accuracy: {streams} streams x 128 tokens at 10 ms/token; error = client time "
        f"- server write time ({note})"
    )
    print(
        f"{'client':<34} {'requests':>8} {'TTFT p50':>9} {'TTFT p95':>9} {'|ITL| p95':>9} "
        f"{'client CPU':>10}"
    )
    for r in measure_accuracy(streams=streams, seconds=seconds):
        cpu = "" if r.client_cpu_percent is None else f"{r.client_cpu_percent:.0f}%"
        print(
            f"{r.client:<34} {r.requests:>8} {r.ttft_err_p50_ms:>+8.2f}ms "
            f"{r.ttft_err_p95_ms:>+8.2f}ms {r.itl_err_p95_ms:>8.2f}ms {cpu:>10}"
        )


def generator_memory() -> None:
    print(
        f"\ngenerator memory (one Locust process; the config's bounds assume "
        f"{IN_FLIGHT_BYTES / 1024:.0f} KiB per request in flight, "
        f"{PROCESS_BYTES / 2**20:.0f} MiB per process)"
    )
    for r in measure_generator_memory():
        print(
            f"  {r.mode:<12} {r.per_request_kib:6.1f} KiB per request in flight "
            f"({r.small} -> {r.large} in flight), process {r.process_mb:.0f} MB"
        )


def run() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--seconds", type=float, default=8.0, help="per measured load")
    parser.add_argument("--report-records", type=int, default=1_000_000)
    parser.add_argument("--trace-rows", type=int, default=1_000_000)
    parser.add_argument("--quality-tokens", type=int, default=50_000)
    parser.add_argument("--compare-records", type=int, default=1_000_000)
    args = parser.parse_args()
    sim_speed(256, 10.0, args.seconds)
    client_accuracy(64, args.seconds, "targets: TTFT p50 <= 1 ms, p95 <= 3 ms; ITL p95 <= 1 ms")
    client_accuracy(
        256, args.seconds, "no target: where one generator core runs short; a stage is "
        "flagged invalid above 90% CPU, use --processes before that",
    )  # fmt: skip
    generator_memory()
    print("\n" + describe(measure_report_speed(args.report_records)))
    print("\n" + describe_trace_memory(measure_trace_memory(args.trace_rows)))
    print("\n" + describe_quality(measure_quality_speed(args.quality_tokens)))
    print("\n" + describe_compare(measure_compare_speed(args.compare_records)))


run()
