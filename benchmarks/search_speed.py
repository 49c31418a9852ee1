"""Time to an SLO answer: `load.mode: search` against a fixed grid of the same resolution.

`quantbench run` searches a simulated ExLlamaV2 target capped at 4 sequences (its SLO knee
follows from its profile: tests/quantbench/test_search_run.py) over a 10× range of rates
(10–100 req/s) to ±5%. Its load time is the sum of its stages' windows (warm-up included),
from stages.jsonl; its wall time adds a Locust start per stage, the simulator's start and
the analysis. A fixed grid that answers to ±5% anywhere in the range needs stages spaced by
(1 + 5%) / (1 − 5%); each of them lasts at least warm-up + stage_duration, so its load time
is at least their count × that (the grid is not run: its floor is exact by construction, and
extensions for samples only add to it).
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from quantbench.config import load_config
from quantbench.runner import run_bench

__all__ = ["SearchSpeed", "describe", "measure_search_speed"]

_LOW, _HIGH, _PRECISION = 10.0, 100.0, 0.05
_WARMUP_S, _STAGE_S = 2.0, 10.0
_CONFIG = f"""\
name: search-bench
targets:
  - name: exl2
    sim: {{stack: exllamav2, quant: exl2, gpu: h100, max_num_seqs: 4}}
workload: {{endpoint: completions, prompt_tokens: 32, output_tokens: 16}}
load:
  mode: search
  arrival: constant
  warmup: {_WARMUP_S}s
  stage_duration: {_STAGE_S}s
  search: {{start: {_LOW}, min_rate: {_LOW}, max_rate: {_HIGH}, precision: {_PRECISION}}}
slo: {{ttft_ms: 60, tpot_ms: null}}
"""


@dataclass(frozen=True)
class SearchSpeed:
    stages: int
    early: int
    load_s: float
    wall_s: float
    answer: str
    grid_stages: int

    @property
    def grid_load_s(self) -> float:
        return self.grid_stages * (_WARMUP_S + _STAGE_S)


def measure_search_speed() -> SearchSpeed:
    with tempfile.TemporaryDirectory() as tmp:
        config_path = Path(tmp) / "bench.yaml"
        config_path.write_text(_CONFIG)
        started = time.monotonic()
        run_dir, _ = run_bench(
            load_config(config_path), Path(tmp) / "runs", console=Console(quiet=True)
        )
        wall_s = time.monotonic() - started
        stages = [json.loads(x) for x in (run_dir / "stages.jsonl").read_text().splitlines()]
        steps = [json.loads(x) for x in (run_dir / "search.jsonl").read_text().splitlines()]
        load_s = sum(s["end_wall_s"] - s["start_wall_s"] for s in stages)
        low, high = steps[-1]["low"], steps[-1]["high"]
        answer = f"{(low + high) / 2:.3g} ± {(high - low) / 2:.2g} req/s"
    step = (1 + _PRECISION) / (1 - _PRECISION)
    grid = math.ceil(math.log(_HIGH / _LOW) / math.log(step)) + 1
    early = sum(1 for s in steps if s["early"])
    return SearchSpeed(len(stages), early, load_s, wall_s, answer, grid)


def describe(r: SearchSpeed) -> str:
    return (
        f"SLO search (simulated ExLlamaV2, 4 sequences; {_LOW:g}–{_HIGH:g} req/s to "
        f"±{_PRECISION:.0%}; stages {_WARMUP_S:g} s warm-up + {_STAGE_S:g} s): answer "
        f"{r.answer} after {r.stages} stages ({r.early} ended early); load time "
        f"{r.load_s:.0f} s (wall {r.wall_s:.0f} s with a Locust start per stage) against at "
        f"least {r.grid_load_s:.0f} s for a fixed grid of {r.grid_stages} stages: "
        f"{r.load_s / r.grid_load_s:.0%} of it (target: at most 50%)"
    )
