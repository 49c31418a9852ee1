"""`quantbench compare` on two synthetic runs of N records each: wall and CPU seconds, peak
memory. Target (issue 14): 1,000,000 records per run in under 30 s on 2 cores.

The runs are as `quantbench run` leaves them (requests.jsonl plus the requests.parquet its
analysis writes). The command runs in a fresh child process, as a user runs it, once with
`--no-report` (reading both runs, every interval and verdict, comparison.json/.md) and once as
by default, which also rebuilds the new run's report with the comparison in it. CPU seconds
are printed beside wall seconds: on a shared machine the wall clock also counts other work.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from analysis.rundir import read_requests, write_parquet
from benchmarks.child import run_child
from benchmarks.synthetic import write_synthetic_run

__all__ = ["CompareSpeed", "describe", "measure_compare_speed"]

_CHILD = """
import json, resource, sys, time
from quantbench.cli import main
started = time.perf_counter()
code = main(["compare", *sys.argv[1:]])
seconds = time.perf_counter() - started
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"code": code, "in_process_s": seconds, "cpu_s": usage.ru_utime + usage.ru_stime,
                  "peak_rss_kib": usage.ru_maxrss}))
"""


@dataclass(frozen=True)
class CompareSpeed:
    records: int  # per run
    wall_s: float  # the whole command, --no-report
    cpu_s: float
    peak_rss_mib: float
    with_report_wall_s: float  # the default: also rebuilds the new run's report
    load_average: float


def _analysed_run(root: Path, records: int, seed: int) -> Path:
    run_dir = write_synthetic_run(root, records, seed=seed)
    write_parquet(run_dir, read_requests(run_dir)[0])  # what the end of `quantbench run` leaves
    return run_dir


def measure_compare_speed(records: int, root: Path | None = None) -> CompareSpeed:
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        base = _analysed_run(Path(tmp) / "base", records, 0)
        new = _analysed_run(Path(tmp) / "new", records, 1)
        load = os.getloadavg()[0]
        wall, quick = run_child(_CHILD, str(base), str(new), "--no-report", what="compare")
        full_wall, _ = run_child(_CHILD, str(base), str(new), what="compare")
    return CompareSpeed(
        records, wall, quick["cpu_s"], quick["peak_rss_kib"] / 1024, full_wall, load
    )


def describe(result: CompareSpeed) -> str:
    return (
        f"quantbench compare: two runs of {result.records:,} records each in {result.wall_s:.1f} s "
        f"wall ({result.cpu_s:.1f} s CPU), peak RSS {result.peak_rss_mib:,.0f} MiB "
        f"(target: < 30 s); rebuilding the new run's report too: {result.with_report_wall_s:.1f} s "
        f"wall (1-minute load average before: {result.load_average:.1f} on {os.cpu_count()} cores)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compare_speed")
    parser.add_argument("--records", type=int, default=1_000_000)
    args = parser.parse_args()
    print(describe(measure_compare_speed(args.records)))


if __name__ == "__main__":
    main()
