"""A synthetic run directory of N realistic records, for timing the analysis without a run.

Records carry every field `loadtest` writes, in its order, with ~64-token ITL lists, warm-up
rows and a few failures, spread over several targets × stages (the shape of a real sweep).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from loadtest.records import REQUESTS_FILE, STAGES_FILE, StageRecord

__all__ = ["write_synthetic_run"]

_S = 1_000_000_000
_QUANTS = ("awq", "gptq", "fp16", "exl2", "awq-tgi")
_ITL_POOL = 2048


def _itl_pool(rng: np.random.Generator, tpot_ms: float, tokens: int) -> list[tuple[int, str]]:
    """Pre-formatted ITL lists (count, JSON text); formatting 64 M floats would dominate."""
    pool = []
    for _ in range(_ITL_POOL):
        count = int(rng.integers(tokens - 16, tokens + 17))
        gaps = rng.lognormal(np.log(tpot_ms), 0.15, count)
        pool.append((count, "[" + ",".join(repr(round(float(g), 6)) for g in gaps) + "]"))
    return pool


def _stage_lines(
    rng: np.random.Generator, target: str, stage: int, load: float, start_s: float, n: int
) -> list[str]:
    window_s = 60.0
    slow = 1.0 + 0.35 * stage
    pool = _itl_pool(rng, 6.0 * slow, 64)
    scheduled = start_s + np.sort(rng.uniform(0, window_s, n))
    ttft = rng.lognormal(np.log(60 * slow), 0.4, n)
    picks = rng.integers(0, _ITL_POOL, n)
    failed = rng.random(n) < 0.003
    lines = []
    for i in range(n):
        ns = int(scheduled[i] * _S)
        warm = "true" if scheduled[i] < start_s + 5.0 else "false"
        head = (
            f'{{"target":"{target}","stage":{stage},"mode":"concurrency","load":{load},'
            f'"warmup":{warm},"user":{i % int(load)},"seq":{i},'
            f'"request_id":"{stage:04x}{ns:028x}",'
        )
        if failed[i]:
            lines.append(
                head + '"outcome":"timeout_ttft","http_status":null,"error":"no first token in '
                f'60 s","wall_sent_s":{scheduled[i]:.6f},"scheduled_ns":{ns},"sent_ns":{ns},'
                '"first_byte_ns":null,"first_token_ns":null,"last_token_ns":null,"end_ns":null,'
                '"prompt_tokens":null,"output_tokens":0,"token_count_source":"events",'
                '"events":0,"schedule_lag_ms":0.05,"ttft_ms":null,"tpot_ms":null,"e2e_ms":null,'
                '"itl_ms":[]}\n'
            )
            continue
        count, itl = pool[picks[i]]
        tpot = 6.0 * slow
        first = ns + int(ttft[i] * 1e6)
        last = first + int(count * tpot * 1e6)
        lines.append(
            head + f'"outcome":"ok","http_status":200,"error":null,'
            f'"wall_sent_s":{scheduled[i]:.6f},"scheduled_ns":{ns},"sent_ns":{ns + 90_000},'
            f'"first_byte_ns":{ns + 4_000_000},"first_token_ns":{first},'
            f'"last_token_ns":{last},"end_ns":{last + 40_000},"prompt_tokens":263,'
            f'"output_tokens":{count + 1},"token_count_source":"usage","events":{count + 1},'
            f'"schedule_lag_ms":0.09,"ttft_ms":{ttft[i]:.6f},"tpot_ms":{tpot},'
            f'"e2e_ms":{(last + 40_000 - ns) / 1e6},"itl_ms":{itl}}}\n'
        )
    return lines


def write_synthetic_run(
    root: Path, records: int, seed: int = 0, *, targets: int = 5, stages: int = 4
) -> Path:
    """Write `root/synthetic/` with run.json, stages.jsonl and `records` request records."""
    run_dir = root / "synthetic"
    run_dir.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    names = [f"vllm-{quant}" for quant in _QUANTS[:targets]]
    meta = {
        "run_id": "synthetic",
        "name": "synthetic",
        "ended_at": "2026-01-01T00:00:00+00:00",  # a finished run, as quantbench run leaves it
        "targets": [
            {"name": name, "stack": "vllm", "quant": name.split("-")[1], "simulated": True}
            for name in names
        ],
        "config": {"slo": {"ttft_ms": 200, "tpot_ms": 10}},
    }
    (run_dir / "run.json").write_text(json.dumps(meta))
    per_stage = records // (len(names) * stages)
    window_s = 60.0
    with (
        (run_dir / STAGES_FILE).open("w") as stage_file,
        (run_dir / REQUESTS_FILE).open("w") as out,
    ):
        for t_index, target in enumerate(names):
            for stage in range(stages):
                start = (t_index * stages + stage) * window_s
                load = float(4**stage)
                stage_file.write(StageRecord(
                    target=target, stage=stage, mode="concurrency", load=load,
                    warmup_s=5.0, start_wall_s=start, end_wall_s=start + window_s,
                    start_ns=int(start * _S), end_ns=int((start + window_s) * _S),
                ).model_dump_json() + "\n")  # fmt: skip
                out.writelines(_stage_lines(rng, target, stage, load, start, per_stage))
    return run_dir
