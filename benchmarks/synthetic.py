"""A synthetic run directory of N records (two targets × three stages) for speed benchmarks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from loadtest.records import REQUESTS_FILE, STAGES_FILE, StageRecord

__all__ = ["write_synthetic_run"]

_S = 1_000_000_000


def write_synthetic_run(root: Path, records: int, seed: int = 0) -> Path:
    run_dir = root / "synthetic"
    run_dir.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    targets, stages = ("awq", "gptq"), (0, 1, 2)
    meta = {
        "run_id": "synthetic",
        "name": "synthetic",
        "targets": [{"name": t, "stack": "vllm", "quant": t, "simulated": True} for t in targets],
        "config": {},
    }
    (run_dir / "run.json").write_text(json.dumps(meta))
    per_stage = records // (len(targets) * len(stages))
    window_s = 60.0
    with (
        (run_dir / STAGES_FILE).open("w") as stage_file,
        (run_dir / REQUESTS_FILE).open("w") as out,
    ):
        for t_index, target in enumerate(targets):
            for stage in stages:
                start = (t_index * 3 + stage) * window_s
                stage_file.write(StageRecord(
                    target=target, stage=stage, mode="concurrency", load=4.0 ** stage,
                    warmup_s=0.0, start_wall_s=start, end_wall_s=start + window_s,
                    start_ns=int(start * _S), end_ns=int((start + window_s) * _S),
                ).model_dump_json() + "\n")  # fmt: skip
                scheduled = start + np.sort(rng.uniform(0, window_s, per_stage))
                ttft = rng.lognormal(np.log(80), 0.4, per_stage)
                tpot = rng.lognormal(np.log(15), 0.2, per_stage)
                for s, a, b in zip(scheduled, ttft, tpot, strict=True):
                    e2e = a + 63 * b
                    ns = int(s * _S)
                    out.write(json.dumps({
                        "target": target, "stage": stage, "mode": "concurrency",
                        "load": 4.0 ** stage, "outcome": "ok", "scheduled_ns": ns,
                        "sent_ns": ns, "end_ns": ns + int(e2e * 1e6), "output_tokens": 64,
                        "ttft_ms": a, "tpot_ms": b, "e2e_ms": e2e, "itl_ms": [b] * 8,
                    }) + "\n")  # fmt: skip
    return run_dir
