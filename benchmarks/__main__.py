"""`make bench`: measurement accuracy against a ground truth, and analysis speed.

1. Simulator speed: 256 concurrent streams on one simulator process, tokens/s and the p99
   lateness of tokens against their simulated due times (benchmarks/sim_speed.py).
2. Accuracy: a fixed-timing simulator (TTFT 50 ms, 10 ms per token) is driven through the
   real pipeline (`quantbench run`, Locust) at several concurrencies; the printed error is
   measured p50/p95 minus the simulator's truth, in the same run.
3. Analysis speed: `analyze_run` on a synthetic run directory of N records, as records/s.
4. Report speed: `quantbench report` in a child process on a synthetic run of 1,000,000
   realistic records (~64-token ITL lists, 5 targets × 4 stages): wall seconds and peak RSS
   against the target of < 30 s and < 4 GB (benchmarks/report_speed.py).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd

from benchmarks.synthetic import write_synthetic_run
from quantbench.cli import main as quantbench_main
from tests.procs import start_sim, stop_sim

TTFT_MS, ITL_MS, OUTPUT_TOKENS = 50.0, 10.0, 32


def accuracy(concurrencies: list[int], stage_s: float) -> None:
    proc, url = start_sim(
        "--stack", "vllm", "--quant", "awq", "--port", "0", "--timing", "fixed",
        "--ttft-ms", str(TTFT_MS), "--itl-ms", str(ITL_MS),
    )  # fmt: skip
    try:
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "bench.yaml"
            config.write_text(
                f"name: accuracy\ntargets:\n  - {{name: fixed, url: {url}, stack: vllm}}\n"
                f"workload: {{endpoint: chat, prompt_tokens: 64, output_tokens: {OUTPUT_TOKENS}}}\n"
                f"load: {{stages: {concurrencies}, warmup: 1s, stage_duration: {stage_s}s}}\n"
            )
            quantbench_main(["run", str(config), "--out", str(Path(tmp) / "runs")])
            (run_dir,) = (Path(tmp) / "runs").iterdir()
            summary = pd.read_csv(run_dir / "summary.csv")
    finally:
        stop_sim(proc)
    print("\naccuracy vs ground truth (fixed simulator: TTFT 50 ms, TPOT 10 ms)")
    print(f"{'users':>6} {'n':>6} {'TTFT p50 err':>13} {'TTFT p95 err':>13} {'TPOT p50 err':>13}")
    for row in summary.itertuples():
        print(
            f"{row.load:>6.0f} {row.ok:>6} {row.ttft_p50_ms - TTFT_MS:>+12.2f}ms "
            f"{row.ttft_p95_ms - TTFT_MS:>+12.2f}ms {row.tpot_p50_ms - ITL_MS:>+12.2f}ms"
        )


def analysis_speed(records: int) -> None:
    from analysis.pipeline import analyze_run

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = write_synthetic_run(Path(tmp), records)
        started = time.perf_counter()
        analyze_run(run_dir)
        elapsed = time.perf_counter() - started
    print(f"\nanalysis: {records} records in {elapsed:.2f} s ({records / elapsed:,.0f} records/s)")


def sim_speed(streams: int, itl_ms: float, seconds: float) -> None:
    from benchmarks.sim_speed import measure_sim_speed

    result = measure_sim_speed(streams, itl_ms, seconds)
    print(
        f"\nsimulator speed (one process, fixed timing, {itl_ms:g} ms per token): "
        f"{result.streams} streams, {result.tokens_per_s:,.0f} tokens/s, "
        f"token lateness p50 {result.lateness_p50_ms:.2f} ms, p99 {result.lateness_p99_ms:.2f} ms "
        f"(target: >= 20,000 tokens/s, p99 < 5 ms), simulator CPU {result.sim_cpu_percent:.0f}%"
    )


def report_speed(records: int) -> None:
    from benchmarks.report_speed import describe, measure_report_speed

    print("\n" + describe(measure_report_speed(records)))


def run() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--stage-seconds", type=float, default=5.0)
    parser.add_argument("--report-records", type=int, default=1_000_000)
    args = parser.parse_args()
    sim_speed(256, 10.0, 8.0)
    accuracy([1, 8, 32], args.stage_seconds)
    analysis_speed(args.records)
    report_speed(args.report_records)


run()
