"""`make bench`: speed and accuracy figures, printed (never pass/fail unit tests).

1. Simulator speed: 256 concurrent streams × 100 tokens/s on one simulator process (its own
   core): tokens/s, its CPU and the p99 lateness of tokens against their simulated due
   times (benchmarks/sim_speed.py).
2. Client accuracy and reach (benchmarks/generator_speed.py): TTFT and ITL as the client saw
   them minus the simulator's own write times, for quantbench's Locust generator and a plain
   asyncio + aiohttp client, each on one core with the simulator on the other and its
   lateness printed beside every figure: at 64 and 256 streams; the most token events/s one
   client core takes within the accuracy targets (the ceiling); and `processes: N` for 1, 2.
3. Generator memory: resident memory of one Locust process per request in flight, closed
   and open loop, against the figure the config's bounds assume (benchmarks/generator_memory.py).
4. Report speed: `quantbench report` in a child process on a synthetic run of 1,000,000
   records (~64-token ITL lists, 5 targets × 4 stages): wall seconds and peak memory
   (benchmarks/report_speed.py).
5. Trace replay input: a 1,000,000-row Mooncake trace read, walked request by request and
   described, and its replay schedule walked, in a child process: seconds and peak memory
   (benchmarks/trace_memory.py).
6. Quality probe: a 50,000-token text and 50 greedy prompts against three simulated targets:
   seconds per target (benchmarks/quality_speed.py).
7. Regression gate: `quantbench compare` on two synthetic runs of 1,000,000 records each:
   wall and CPU seconds, peak memory (benchmarks/compare_speed.py).
8. Time to an SLO answer: `load.mode: search` on a simulated target with a known knee, its
   load time against a fixed grid of the same resolution (benchmarks/search_speed.py).
"""

from __future__ import annotations

import argparse

from benchmarks.compare_speed import describe as describe_compare
from benchmarks.compare_speed import measure_compare_speed
from benchmarks.generator_memory import measure_generator_memory
from benchmarks.generator_speed import print_generator_speed
from benchmarks.quality_speed import describe as describe_quality
from benchmarks.quality_speed import measure_quality_speed
from benchmarks.report_speed import describe, measure_report_speed
from benchmarks.search_speed import describe as describe_search
from benchmarks.search_speed import measure_search_speed
from benchmarks.sim_speed import measure_sim_speed
from benchmarks.trace_memory import describe as describe_trace_memory
from benchmarks.trace_memory import measure_trace_memory
from loadtest.limits import IN_FLIGHT_BYTES, PROCESS_BYTES


def sim_speed(streams: int, itl_ms: float, seconds: float) -> None:
    result = measure_sim_speed(streams, itl_ms, seconds)
    print(
        f"\nsimulator speed (one process on its own core, fixed timing, {itl_ms:g} ms per token, "
        f"vLLM chunks with per-chunk usage): {result.streams} streams, "
        f"{result.tokens_per_s:,.0f} tokens/s, simulator CPU {result.sim_cpu_percent:.0f}%, "
        f"token lateness p50 {result.lateness_p50_ms:.2f} ms, p99 {result.lateness_p99_ms:.2f} ms "
        f"(targets: under 70% CPU, p99 < 5 ms)"
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


SECTIONS = (
    "sim", "accuracy", "ceiling", "scaling", "memory", "report", "trace", "quality", "compare",
    "search",
)  # fmt: skip


def run() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="per measured load")
    parser.add_argument("--report-records", type=int, default=1_000_000)
    parser.add_argument("--trace-rows", type=int, default=1_000_000)
    parser.add_argument("--quality-tokens", type=int, default=50_000)
    parser.add_argument(
        "--only",
        nargs="+",
        choices=SECTIONS,
        default=SECTIONS,
        metavar="SECTION",
        help=f"run only these sections ({', '.join(SECTIONS)}; default: all)",
    )
    parser.add_argument("--compare-records", type=int, default=1_000_000)
    args = parser.parse_args()
    only = set(args.only)
    if "sim" in only:
        sim_speed(256, 10.0, args.seconds)
    print_generator_speed(args.seconds, only)
    if "memory" in only:
        generator_memory()
    if "report" in only:
        print("\n" + describe(measure_report_speed(args.report_records)))
    if "trace" in only:
        print("\n" + describe_trace_memory(measure_trace_memory(args.trace_rows)))
    if "quality" in only:
        print("\n" + describe_quality(measure_quality_speed(args.quality_tokens)))
    if "compare" in only:
        print("\n" + describe_compare(measure_compare_speed(args.compare_records)))
    if "search" in only:
        print("\n" + describe_search(measure_search_speed()))


run()
