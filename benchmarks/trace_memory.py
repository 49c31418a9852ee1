"""Reading and walking a 1,000,000-row trace: seconds and peak memory of the generator side.

The trace (Mooncake JSON lines with hash_ids, written to a temporary folder) is read in a
fresh child process, as a replay would: `read_trace`, `apply_controls`, then every request
through `iter_requests`, then `describe_trace`, then the replay dispatcher's whole schedule
(`replay_plan` on a clock that jumps to each wait, with the sessions' turns `SessionTurns`
keeps), as a generator process walks it; prompts are built for the first 10,000 requests.
Peak RSS is the child's own `ru_maxrss`. Target for a whole replay (issue 17): under 1 GB for
the generator.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.child import run_child
from benchmarks.trace_synth import write_large_mooncake

__all__ = ["TraceMemory", "describe", "measure_trace_memory"]

_CHILD = """
import json, resource, sys, time
from pathlib import Path
from loadtest.traces import BlockPrompts, TraceConfig, apply_controls, describe_trace
from loadtest.traces import iter_requests, read_trace
from loadtest.workload import VOCABULARY
from loadtest.prompts import PromptSource
from loadtest.config import LoadConfig
from loadtest.dispatch import Wait
from loadtest.replay import SessionTurns, replay_plan, stage_lengths_s
from loadtest.shapes import LoadPlan

def rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

path = Path(sys.argv[1])
base = rss_mib()
t0 = time.perf_counter()
trace = apply_controls(read_trace(path), TraceConfig(file=path, speedup=2))
t1 = time.perf_counter()
read_peak = rss_mib()
tokens = 0
for request in iter_requests(trace):
    tokens += request.input_tokens + len(request.hash_ids)
t2 = time.perf_counter()
iterate_peak = rss_mib()
summary = describe_trace(trace).summary
t3 = time.perf_counter()
load = LoadConfig.model_validate({"mode": "replay", "stages": [1], "warmup": 0})
plan = LoadPlan(load, stage_lengths_s=stage_lengths_s(trace, load))
turns = SessionTurns.of(trace)
clock = [0.0]
launches = 0
for step in replay_plan(plan, trace, lambda: clock[0]):
    if isinstance(step, Wait):
        clock[0] = step.until_s
    else:
        launches += 1
assert launches == len(trace), launches
t4 = time.perf_counter()
schedule_peak = rss_mib()
prompts = BlockPrompts(PromptSource(VOCABULARY), block_size=512)
for request in iter_requests(trace):
    if request.index >= 10_000:
        break
    prompts.make(request.input_tokens, request.hash_ids, request.row)
t5 = time.perf_counter()
print(json.dumps({
    "rows": len(trace), "base_mib": base, "read_s": t1 - t0, "read_peak_mib": read_peak,
    "iterate_s": t2 - t1, "iterate_peak_mib": iterate_peak, "describe_s": t3 - t2,
    "schedule_s": t4 - t3, "schedule_peak_mib": schedule_peak,
    "peak_mib": rss_mib(), "prompt_us": (t5 - t4) / 10_000 * 1e6, "tokens": tokens,
}))
"""


@dataclass(frozen=True)
class TraceMemory:
    rows: int
    file_mib: float
    write_s: float
    base_mib: float  # the child after its imports, before reading
    read_s: float
    read_peak_mib: float
    iterate_s: float
    iterate_peak_mib: float
    describe_s: float
    schedule_s: float  # the replay dispatcher's every step, stage 1×
    schedule_peak_mib: float
    peak_mib: float
    prompt_us: float  # one BlockPrompts prompt without a tokenizer (mean input ~1,900 tokens)


def measure_trace_memory(rows: int = 1_000_000, root: Path | None = None) -> TraceMemory:
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        started = time.perf_counter()
        path = write_large_mooncake(Path(tmp) / "trace.jsonl", rows)
        write_s = time.perf_counter() - started
        _, figures = run_child(_CHILD, str(path), what="the trace memory child")
        size_mib = path.stat().st_size / 2**20
    return TraceMemory(
        rows=int(figures["rows"]),
        file_mib=size_mib,
        write_s=write_s,
        base_mib=figures["base_mib"],
        read_s=figures["read_s"],
        read_peak_mib=figures["read_peak_mib"],
        iterate_s=figures["iterate_s"],
        iterate_peak_mib=figures["iterate_peak_mib"],
        describe_s=figures["describe_s"],
        schedule_s=figures["schedule_s"],
        schedule_peak_mib=figures["schedule_peak_mib"],
        peak_mib=figures["peak_mib"],
        prompt_us=figures["prompt_us"],
    )


def describe(result: TraceMemory) -> str:
    return (
        f"trace replay input: {result.rows:,} Mooncake rows ({result.file_mib:,.0f} MiB of JSON "
        f"lines, written in {result.write_s:.1f} s): read {result.read_s:.1f} s, peak RSS "
        f"{result.read_peak_mib:,.0f} MiB (imports alone {result.base_mib:,.0f} MiB); every "
        f"request walked in {result.iterate_s:.1f} s, peak {result.iterate_peak_mib:,.0f} MiB; "
        f"describe {result.describe_s:.1f} s; the replay schedule walked in "
        f"{result.schedule_s:.1f} s, peak {result.schedule_peak_mib:,.0f} MiB; overall peak "
        f"{result.peak_mib:,.0f} MiB (target for a whole replay: < 1 GB); a hash_ids prompt "
        f"without tokenizer {result.prompt_us:.0f} us"
    )


if __name__ == "__main__":
    print(describe(measure_trace_memory()))
