"""`quantbench report` on a synthetic run of N records: wall seconds and peak memory.

The report runs in a fresh child process, as a user runs it, so its start-up and imports
count and its peak RSS (`ru_maxrss` of the child itself) is not mixed with this process's.
Target (issue "Analysis", item 6): 1,000,000 records in under 30 s and 4 GB on 2 cores.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass
from pathlib import Path

from benchmarks.child import run_child
from benchmarks.synthetic import write_synthetic_run

__all__ = ["ReportSpeed", "describe", "measure_report_speed"]

_CHILD = """
import json, resource, sys, time
from quantbench.cli import main
started = time.perf_counter()
code = main(["report", sys.argv[1]])
seconds = time.perf_counter() - started
peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"code": code, "in_process_s": seconds, "peak_rss_kib": peak_kib}))
"""


@dataclass(frozen=True)
class ReportSpeed:
    records: int
    jsonl_bytes: int
    wall_s: float  # the whole command: interpreter start, imports, analysis, reports
    in_process_s: float  # `main(["report", ...])` alone
    peak_rss_mib: float
    rerun_wall_s: float  # again, now that requests.parquet is current


def _report(run_dir: Path) -> tuple[float, dict[str, float]]:
    return run_child(_CHILD, str(run_dir), what="quantbench report")


def measure_report_speed(records: int, root: Path | None = None) -> ReportSpeed:
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        run_dir = write_synthetic_run(Path(tmp), records)
        size = (run_dir / "requests.jsonl").stat().st_size
        wall, first = _report(run_dir)
        rerun_wall, _ = _report(run_dir)
    return ReportSpeed(
        records,
        size,
        wall,
        first["in_process_s"],
        first["peak_rss_kib"] / 1024,
        rerun_wall,
    )


def describe(result: ReportSpeed) -> str:
    return (
        f"quantbench report: {result.records:,} records ({result.jsonl_bytes / 1e9:.2f} GB of "
        f"JSON lines) in {result.wall_s:.1f} s wall ({result.in_process_s:.1f} s in process), "
        f"peak RSS {result.peak_rss_mib:,.0f} MiB (target: < 30 s, < 4 GB); "
        f"again from requests.parquet: {result.rerun_wall_s:.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report_speed")
    parser.add_argument("--records", type=int, default=1_000_000)
    args = parser.parse_args()
    print(describe(measure_report_speed(args.records)))


if __name__ == "__main__":
    main()
