"""Run directories synthesized from the simulator's own engine model, on a virtual clock.

The regression-gate tests need dozens of runs (twenty A/A pairs, ten nights); whole
`quantbench run`s with simulator and Locust processes take seconds each in wall time and
carry this machine's load noise into every figure. Here the same engine a simulator process
runs (`services.sim.engine_factory.build_engine`, from the same `SimSettings`, `slowdown`
fault included) serves closed-loop users inside one asyncio loop whose clock is virtual
(`looptime`): each run takes a fraction of a second and its only noise is the workload's
seeded draw of prompt and output lengths, as a real nightly pair's sampling noise is.
Records go through the loadtest record model and `loadtest.timing.derive`, as the Locust
generator writes them; run.json through `RunMeta`.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import looptime

from loadtest.config import LoadConfig, WorkloadConfig
from loadtest.records import REQUESTS_FILE, STAGES_FILE, Outcome, RequestRecord, StageRecord
from loadtest.run_meta import RunMeta, TargetMeta
from loadtest.timing import derive
from loadtest.workload import sample_length
from services.sim.config import SimSettings
from services.sim.engine_factory import build_engine

S = 1_000_000_000

# A small nightly: one closed-loop stage of 16 users, lengths drawn per request (the noise).
NIGHTLY_WORKLOAD: dict[str, Any] = {
    "endpoint": "chat",
    "prompt_tokens": {"dist": "normal", "mean": 256, "std": 64, "min": 16, "max": 512},
    "output_tokens": {"dist": "normal", "mean": 32, "std": 12, "min": 8, "max": 96},
}
NIGHTLY_LOAD: dict[str, Any] = {
    "mode": "concurrency",
    "stages": [16],
    "warmup": 2.0,
    "stage_duration": 20.0,
}
AWQ: dict[str, Any] = {"stack": "vllm", "quant": "awq", "gpu": "h100"}
FP16: dict[str, Any] = {"stack": "vllm", "quant": "fp16", "gpu": "h100"}


def slowed(sim: dict[str, Any], factor: float) -> dict[str, Any]:
    """`sim` with the decode `slowdown` fault: every decode step takes `factor` times longer."""
    return sim | {"faults": {"slowdown": factor}}


async def _user(
    engine: Any,
    target: str,
    stage: int,
    load: float,
    user: int,
    rng: random.Random,
    workload: WorkloadConfig,
    measure_from: float,
    until: float,
    out: list[RequestRecord],
) -> None:
    loop = asyncio.get_running_loop()
    seq_no = 0
    while loop.time() < until:
        prompt = sample_length(workload.prompt_tokens, rng)
        output = sample_length(workload.output_tokens, rng)
        sent = loop.time()
        seq = engine.submit(prompt, output)
        dues = [event.due async for event in seq]
        sent_ns, token_ns = int(sent * S), [int(d * S) for d in dues]
        record = RequestRecord(
            target=target,
            stage=stage,
            mode="concurrency",
            load=load,
            warmup=sent < measure_from,
            user=user,
            seq=seq_no,
            request_id=f"{target}-{stage}-{user}-{seq_no}",
            outcome=Outcome.OK if seq.finished_reason == "length" else Outcome.ABORTED,
            http_status=200,
            scheduled_ns=sent_ns,
            sent_ns=sent_ns,
            first_byte_ns=sent_ns,
            first_token_ns=token_ns[0] if token_ns else None,
            last_token_ns=token_ns[-1] if token_ns else None,
            end_ns=token_ns[-1] if token_ns else sent_ns,
            prompt_tokens=prompt,
            output_tokens=len(token_ns),
            token_count_source="usage",
            events=len(token_ns),
        )
        out.append(derive(record, token_ns, [1] * len(token_ns)))
        seq_no += 1


async def _stage(
    settings: SimSettings,
    target: str,
    stage: int,
    users: int,
    load: LoadConfig,
    workload: WorkloadConfig,
    seed: int,
    out: list[RequestRecord],
) -> StageRecord:
    loop = asyncio.get_running_loop()
    engine = build_engine(settings)
    start = loop.time()
    measure_from = start + load.warmup
    until = measure_from + load.stage_duration
    await asyncio.gather(
        *(
            _user(
                engine,
                target,
                stage,
                float(users),
                user,
                random.Random(f"{seed}:{target}:{stage}:{user}"),
                workload,
                measure_from,
                until,
                out,
            )
            for user in range(users)
        )
    )
    await engine.aclose()
    return StageRecord(
        target=target,
        stage=stage,
        mode="concurrency",
        load=float(users),
        warmup_s=load.warmup,
        start_wall_s=start,
        end_wall_s=until,
        start_ns=int(start * S),
        end_ns=int(until * S),
    )


def _simulate(
    targets: dict[str, SimSettings], load: LoadConfig, workload: WorkloadConfig, seed: int
) -> tuple[list[RequestRecord], list[StageRecord]]:
    records: list[RequestRecord] = []
    stages: list[StageRecord] = []

    async def main() -> None:
        for target, settings in targets.items():
            for index, users in enumerate(load.stages):
                stages.append(
                    await _stage(settings, target, index, int(users), load, workload, seed, records)
                )

    loop = looptime.new_event_loop(start=1000.0)
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    return records, stages


def write_simulated_run(
    root: Path,
    name: str,
    targets: dict[str, dict[str, Any]],
    *,
    seed: int = 0,
    workload: dict[str, Any] | None = None,
    load: dict[str, Any] | None = None,
    slo: dict[str, Any] | None = None,
    started_at: str | None = None,
) -> Path:
    """`root/name/`: run.json, stages.jsonl and requests.jsonl of a closed-loop run of
    `targets` (name → bench.yaml `sim:` settings, e.g. `{"faults": {"slowdown": 1.1}}`),
    as `quantbench run` leaves them before analysis. `seed` is the workload's seed."""
    work = WorkloadConfig.model_validate((workload or NIGHTLY_WORKLOAD) | {"seed": seed})
    plan = LoadConfig.model_validate(load or NIGHTLY_LOAD)
    sims = {t: SimSettings.model_validate(s) for t, s in targets.items()}
    records, stages = _simulate(sims, plan, work, seed)
    run_dir = root / name
    run_dir.mkdir(parents=True)
    meta = RunMeta(
        run_id=name,
        name=name,
        started_at=started_at,
        ended_at=started_at or "2026-11-01T00:00:00+00:00",  # finished: quantbench run sets it
        seeds={"workload": seed},
        config={
            "workload": work.model_dump(mode="json"),
            "load": plan.model_dump(mode="json"),
            "slo": slo or {"ttft_ms": 2000, "tpot_ms": 100},
        },
        targets=[
            TargetMeta(
                name=t,
                stack=s.stack,
                quant=s.quant,
                simulated=True,
                sim=s.model_dump(mode="json"),
                model=s.served_model_name,
            )
            for t, s in sims.items()
        ],
    )
    meta.write(run_dir)
    records.sort(key=lambda r: (r.target, r.stage, r.scheduled_ns))
    (run_dir / REQUESTS_FILE).write_text("".join(r.model_dump_json() + "\n" for r in records))
    (run_dir / STAGES_FILE).write_text("".join(s.model_dump_json() + "\n" for s in stages))
    return run_dir
