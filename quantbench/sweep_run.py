"""`load.mode: sweep` for one target, as guidellm users know it: one user, then the saturated
throughput (`max_concurrency` users), then open-loop rates spaced evenly between the two
rates those achieved (`sweep_rates`). Two Locust runs: the closed-loop pair, then the rates;
every stage is a normal stage of the run directory (the first two `concurrency`, the rest
`rate`), and the verdict and plan read the open-loop ones (analysis/capacity.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from loadtest.config import LocustSettings, SweepConfig
from loadtest.jsonl import read_jsonl
from loadtest.limits import accurate_rate_limit
from loadtest.records import REQUESTS_FILE, STAGES_FILE
from quantbench.errors import HarnessError
from quantbench.locustproc import LocustProgress
from quantbench.progress import StageProgress

__all__ = ["achieved_req_per_s", "run_sweep", "sweep_rates"]

RunStages = Callable[[LocustSettings, Callable[[LocustProgress], None]], None]
CLOSED_STAGES = 2  # one user, then max_concurrency users


def sweep_rates(synchronous: float, throughput: float, count: int) -> list[float]:
    """`count` rates from just above `synchronous` up to `throughput`, evenly spaced."""
    return [float(r) for r in np.linspace(synchronous, throughput, count + 1)[1:]]


def achieved_req_per_s(run_dir: Path, target: str, stage: int) -> float | None:
    """Ok requests a stage completed per second of its measured window (None: it has none)."""
    stages: list[Any] = read_jsonl(run_dir / STAGES_FILE).rows
    window = [s for s in stages if isinstance(s, dict) and s.get("target") == target
              and s.get("stage") == stage]  # fmt: skip
    if not window:
        return None
    measured_s = window[-1]["end_wall_s"] - window[-1]["start_wall_s"] - window[-1]["warmup_s"]
    rows: list[Any] = read_jsonl(run_dir / REQUESTS_FILE).rows
    ok = sum(
        1
        for r in rows
        if isinstance(r, dict) and r.get("target") == target and r.get("stage") == stage
        and not r.get("warmup") and r.get("outcome") == "ok"
    )  # fmt: skip
    return ok / measured_s if ok and measured_s > 0 else None


def run_sweep(
    settings: LocustSettings,
    config: SweepConfig,
    console: Console,
    run_stages: RunStages,
    first_stage: int = 0,
) -> list[float]:
    """Run the sweep's stages from `first_stage` on (a resumed run); returns its rates."""
    load, target, run_dir = settings.load, settings.endpoint.name, settings.run_dir
    closed = load.stage_load("concurrency", [1, config.max_concurrency])
    if first_stage < CLOSED_STAGES:
        step = settings.model_copy(
            update={"load": closed, "stage_offset": 0, "first_stage": first_stage}
        )
        with StageProgress(console, target, closed, settings.goal, first_stage) as progress:
            run_stages(step, progress)
    synchronous = achieved_req_per_s(run_dir, target, 0)
    throughput = achieved_req_per_s(run_dir, target, 1)
    if synchronous is None or throughput is None:
        raise HarnessError(
            f"target {target}: the sweep's closed-loop stages completed no request; "
            "no rates to sweep (see the invalid stages)"
        )
    rates = sweep_rates(synchronous, max(throughput, synchronous), config.rates)
    ceiling = accurate_rate_limit(load, settings.workload)
    if ceiling is not None and rates[-1] > ceiling:
        console.print(
            f"  [yellow]{target}: rates above {ceiling:.3g} req/s are more than the generator "
            "times accurately (raise load.processes): capped there[/]"
        )
        rates = [min(r, ceiling) for r in rates]
    console.print(
        f"  {target}: one user {synchronous:.3g} req/s, {config.max_concurrency} users "
        f"{throughput:.3g} req/s: sweeping {', '.join(f'{r:.3g}' for r in rates)} req/s",
        highlight=False,
    )
    opened = load.stage_load("rate", rates)
    first = max(first_stage - CLOSED_STAGES, 0)
    step = settings.model_copy(
        update={"load": opened, "stage_offset": CLOSED_STAGES, "first_stage": first}
    )
    with StageProgress(console, target, opened, settings.goal, first) as progress:
        run_stages(step, progress)
    return rates
