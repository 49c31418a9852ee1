"""Hand-made summaries and small synthetic run directories for the analysis tests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.summary import SUMMARY_COLUMNS
from loadtest.records import REQUESTS_FILE, STAGES_FILE, Outcome, RequestRecord, StageRecord

S = 1_000_000_000
MS = 1_000_000


def stage_row(target: str, load: float, **figures: Any) -> dict[str, Any]:
    """One summary row with harmless defaults; `figures` override any column."""
    row: dict[str, Any] = dict.fromkeys(SUMMARY_COLUMNS)
    row.update(
        target=target,
        stack="vllm",
        quant=target,
        simulated=False,
        stage=0,
        mode="concurrency",
        load=load,
        requests=100,
        ok=100,
        errors=0,
        error_rate=0.0,
        valid=True,
        invalid_reason="",
        req_per_s=load,
        output_tok_per_s=load * 100,
        output_tokens_mean=100.0,
        goodput_req_per_s=load,
        ttft_p95_ms=100.0,
        tpot_p95_ms=10.0,
        e2e_p95_ms=1000.0,
    )
    row.update(figures)
    return row


def summary_of(*rows: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=SUMMARY_COLUMNS)


@dataclass(frozen=True)
class FakeTarget:
    """A target whose latency grows with load: TTFT = ttft_ms × (1 + load/8), likewise TPOT."""

    name: str
    quant: str = "awq"
    ttft_ms: float = 50.0
    tpot_ms: float = 10.0
    rate_per_user: float = 8.0  # completed requests/s per unit of load
    simulated: bool = True


def _records(target: FakeTarget, index: int, load: float, start_s: float, window_s: float):
    slow = 1 + load / 8
    count = int(target.rate_per_user * load * window_s)
    for i in range(count):
        at = start_s + window_s * i / count
        ttft, tpot = target.ttft_ms * slow * (1 + 0.01 * (i % 10)), target.tpot_ms * slow
        e2e = ttft + 31 * tpot
        yield RequestRecord(
            target=target.name,
            stage=index,
            mode="concurrency",
            load=load,
            outcome=Outcome.OK,
            scheduled_ns=int(at * S),
            sent_ns=int(at * S),
            end_ns=int(at * S) + int(e2e * MS),
            output_tokens=32,
            ttft_ms=ttft,
            tpot_ms=tpot,
            e2e_ms=e2e,
            itl_ms=[tpot] * 31,
        )


def write_run(
    root: Path,
    targets: list[FakeTarget],
    loads: tuple[float, ...] = (1, 4, 16),
    window_s: float = 10.0,
    slo: dict[str, float] | None = None,
) -> Path:
    """A run directory as `quantbench run` leaves it before analysis (no summary yet)."""
    run_dir = root / "run"
    run_dir.mkdir(parents=True)
    meta = {
        "run_id": "test-run",
        "ended_at": "2026-11-27T00:00:00+00:00",  # set by quantbench run before analysis
        "name": "test",
        "config": {"slo": slo or {"ttft_ms": 200, "tpot_ms": 30}, "load": {"mode": "concurrency"}},
        "targets": [
            {"name": t.name, "stack": "vllm", "quant": t.quant, "simulated": t.simulated}
            for t in targets
        ],
    }
    (run_dir / "run.json").write_text(json.dumps(meta))
    clock = 0.0
    with (run_dir / REQUESTS_FILE).open("w") as out, (run_dir / STAGES_FILE).open("w") as st:
        for target in targets:
            for index, load in enumerate(loads):
                for record in _records(target, index, load, clock, window_s):
                    out.write(record.model_dump_json() + "\n")
                stage = StageRecord(
                    target=target.name,
                    stage=index,
                    mode="concurrency",
                    load=load,
                    warmup_s=0.0,
                    start_wall_s=clock,
                    end_wall_s=clock + window_s + 2,
                    start_ns=int(clock * S),
                    end_ns=int((clock + window_s + 2) * S),
                )
                st.write(stage.model_dump_json() + "\n")
                clock += window_s + 3
    return run_dir
