"""Real Prometheus vs direct scrapes of the same simulators: same per-stage figures, both
reconciled with the client's own count; and a restart inside a stage flagged by both paths.
"""

from __future__ import annotations

import math
import time

import httpx
import pandas as pd
import pytest

from analysis.server import (
    MetricsRecorder,
    load_stage_metrics,
    reconcile,
    stage_metrics_from_prometheus,
)
from loadtest.records import StageRecord
from tests.analysis.server.helpers import stage
from tests.analysis.server.live import (
    MAX_TOKENS,
    RESTART_TARGET,
    SIM_ARGS,
    ClientResult,
    PromEnv,
    drive,
    drive_all,
    wait_for,
)
from tests.procs import start_sim, stop_sim

pytestmark = pytest.mark.slow


def both(env: PromEnv, stages: list[StageRecord]) -> tuple[pd.DataFrame, pd.DataFrame]:
    stacks = {name: t.stack for name, t in env.targets().items()}
    direct = load_stage_metrics(env.run_dir, stages, stacks).set_index("target")
    prom = stage_metrics_from_prometheus(env.client, stages, env.targets()).set_index("target")
    return direct, prom


def test_prometheus_and_direct_scrapes_agree_and_reconcile(prom_env: PromEnv) -> None:
    env, names = prom_env, list(prom_env.sims)
    jobs = [(env.sims[name].stack, env.sims[name].url) for name in names]
    # TGI creates its series on first use: make them exist before the stage.
    assert all(r.ok for results in drive_all(jobs, 2) for r in results)
    quiet = time.time()
    wait_for(lambda: env.scraped_after(names, quiet), "scrapes after the warm-up")
    start = time.time()
    results: dict[str, list[ClientResult]] = {name: [] for name in names}
    while time.time() - start < 2.5:  # the window must span >= 2 scrape intervals
        for name, batch in zip(names, drive_all(jobs, 4), strict=True):
            results[name] += batch
    quiet = time.time()
    wait_for(lambda: env.scraped_after(names, quiet), "scrapes after the stage")
    end = time.time()

    stages = [stage(name, 1, start, end) for name in names]
    direct, prom = both(env, stages)

    targets = httpx.get(f"{env.base_url}/api/v1/targets").json()["data"]["activeTargets"]
    health = {t["labels"]["target"]: (t["health"], t["lastError"]) for t in targets}
    for name in names:
        assert health[name] == ("up", ""), f"{name}: Prometheus scrape error {health[name]}"
        assert env.recorders[name].errors == 0, f"{name}: the recorder saw failed scrapes"

    for name in names:
        ok = [r for r in results[name] if r.ok]
        d, p = direct.loc[name], prom.loc[name]
        assert len(ok) == len(results[name]) > 0
        assert d["requests_finished"] == p["requests_finished"] == len(ok), name
        assert d["generation_tokens"] == p["generation_tokens"] == len(ok) * MAX_TOKENS, name
        assert d["prompt_tokens"] == p["prompt_tokens"] > 0, name
        assert not d["restarted"] and not p["restarted"], (d["restart_reason"], p["restart_reason"])
        for column in ("e2e_mean_ms", "e2e_p50_ms", "e2e_p95_ms", "ttft_mean_ms", "ttft_p95_ms"):
            if math.isnan(d[column]):
                assert math.isnan(p[column]) and name == "tgi", (name, column)
            else:
                assert p[column] == pytest.approx(d[column], rel=1e-9), (name, column)
        client = pd.DataFrame(
            {
                "target": [name],
                "stage": [1],
                "ok": [len(ok)],
                "ttft_mean_ms": [sum(r.ttft_ms for r in ok) / len(ok)],
            }
        )
        for frame in (direct, prom):
            checked = reconcile(frame.loc[[name]].reset_index(), client)
            assert not checked["flagged"].any(), checked["reason"].tolist()


def test_restart_inside_a_stage_is_flagged_by_both_paths(prom_env: PromEnv) -> None:
    env = prom_env
    proc, url = start_sim(
        "--stack", "vllm", "--quant", "awq", "--port", str(env.restart_port), *SIM_ARGS,
        "--restart-at", "4.5", "--restart-down", "1.5",
    )  # fmt: skip
    recorder = MetricsRecorder(env.run_dir, RESTART_TARGET, url + "/metrics").start()
    env.recorders[RESTART_TARGET] = recorder
    try:
        assert all(r.ok for r in drive("vllm", url, 4))
        quiet = time.time()
        wait_for(lambda: env.scraped_after([RESTART_TARGET], quiet), "scrapes after warm-up")
        start = time.time()
        failed, sent = False, 0
        while True:  # requests before, during and after the restart
            outcome = drive("vllm", url, 4)
            sent += len(outcome)
            failed |= not all(r.ok for r in outcome)
            if failed and all(r.ok for r in outcome):
                break
            assert time.time() - start < 15, "the simulator never restarted"
        sent += len(drive("vllm", url, 4))
        quiet = time.time()
        wait_for(lambda: env.scraped_after([RESTART_TARGET], quiet), "scrapes after restart")
        end = time.time()
    finally:
        recorder.stop()
        stop_sim(proc)
    direct, prom = both(env, [stage(RESTART_TARGET, 1, start, end)])
    for path, row in (
        ("direct", direct.loc[RESTART_TARGET]),
        ("prometheus", prom.loc[RESTART_TARGET]),
    ):
        assert row["restarted"], f"{path}: restart not flagged"
        assert "process_start_time_seconds changed" in row["restart_reason"], path
        assert "vllm:request_success_total" in row["restart_reason"], path
        assert row["scrape_errors"] >= 1, f"{path}: the 1.5 s downtime left no failed scrape"
        # increase() adds the post-reset value: never negative, never more than was sent.
        assert 0 < row["requests_finished"] <= sent, f"{path}: {row['requests_finished']}"
        assert 0 < row["generation_tokens"] <= sent * MAX_TOKENS, path
