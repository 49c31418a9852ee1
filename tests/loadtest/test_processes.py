"""Several Locust generator processes feeding one run directory."""

from __future__ import annotations

import csv
import json
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from loadtest.arrivals import arrival_times
from tests.procs import REPO_ROOT, start_sim, stop_sim

pytestmark = pytest.mark.slow


@pytest.fixture
def sim_url() -> Iterator[str]:
    proc, url = start_sim("--timing", "fixed", "--ttft-ms", "5", "--itl-ms", "1", "--port", "0")
    yield url
    stop_sim(proc)


def locust(url: str, run_dir: Path, *args: str) -> list[str]:
    port = free_port()  # not Locust's 5557: other test runs on this host may be using it
    return [
        sys.executable, "-m", "locust", "-f", "loadtest/locustfile.py", "--headless",
        "--processes", "2", "--master-bind-port", port, "--master-port", port,
        "--host", url, "--qb-output-tokens", "4",
        "--qb-run-dir", str(run_dir), "--only-summary", "--loglevel", "WARNING", *args,
    ]  # fmt: skip


def free_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return str(probe.getsockname()[1])


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_two_processes_share_one_global_schedule(sim_url: str, tmp_path: Path) -> None:
    # 80 and 160 arrivals per stage, and 10 ok samples asked for: no stage is extended.
    args = ("--qb-mode", "rate", "--qb-arrival", "poisson", "--qb-stages", "40,80",
            "--qb-warmup", "0.5s", "--qb-stage-duration", "2s",
            "--qb-min-samples", "10")  # fmt: skip
    result = subprocess.run(locust(sim_url, tmp_path, *args), cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    records = lines(tmp_path / "requests.jsonl")
    expected = sum(
        len(arrival_times(rate, 2.5 * i, 2.5 * (i + 1), "poisson", f"0:{i}"))
        for i, rate in enumerate((40, 80))
    )
    assert len(records) == expected, "each arrival of the schedule sent exactly once"
    assert len({r["request_id"] for r in records}) == expected
    assert Counter(r["user"] for r in records).keys() == {0, 1}  # both workers dispatched
    assert all(r["outcome"] == "ok" for r in records)
    assert len({s["pid"] for s in lines(tmp_path / "generator.jsonl")}) == 2


def test_a_dead_worker_keeps_its_records_and_marks_the_stage(sim_url: str, tmp_path: Path) -> None:
    args = ("--qb-stages", "4", "--qb-warmup", "0.5s", "--qb-stage-duration", "7s")
    proc = subprocess.Popen(locust(sim_url, tmp_path, *args), cwd=REPO_ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    requests = tmp_path / "requests.jsonl"
    deadline = time.monotonic() + 30
    while not (requests.exists() and len(requests.read_text().splitlines()) > 50):
        assert time.monotonic() < deadline, "no records"
        time.sleep(0.05)
    workers = psutil.Process(proc.pid).children()
    assert len(workers) == 2
    workers[0].send_signal(signal.SIGKILL)
    written_before = {r["request_id"] for r in lines(requests)}
    assert proc.wait(timeout=60) == 0
    after = {r["request_id"] for r in lines(requests)}
    assert written_before <= after, "records written before the kill are all kept"
    (stage,) = lines(tmp_path / "stages.jsonl")
    assert stage["workers_lost"] == 1


def test_locust_rows_show_ttft_tpot_e2e_and_count_each_failure_once(tmp_path: Path) -> None:
    """Locust's own statistics (its CSV, web UI and summary) across two worker processes:
    the endpoint row counts every request and each failure once; the LLM rows hold the ok
    requests' TTFT, TPOT and E2E; the Aggregated row is the endpoint row, not diluted."""
    proc, url = start_sim(
        "--timing", "fixed", "--ttft-ms", "5", "--itl-ms", "1", "--port", "0",
        "--error", "503:0.3", "--fault-seed", "3",
    )  # fmt: skip
    try:
        args = ("--qb-stages", "4", "--qb-warmup", "0.2s", "--qb-stage-duration", "2s",
                "--csv", str(tmp_path / "locust"))  # fmt: skip
        result = subprocess.run(locust(url, tmp_path, *args), cwd=REPO_ROOT,
                                capture_output=True, text=True, timeout=120)  # fmt: skip
    finally:
        stop_sim(proc)
    assert result.returncode in (0, 1), result.stderr[-2000:]  # 1: Locust saw failures
    records = lines(tmp_path / "requests.jsonl")
    ok = sum(r["outcome"] == "ok" for r in records)
    assert 0 < ok < len(records)
    with (tmp_path / "locust_stats.csv").open() as handle:
        rows = {(row["Type"], row["Name"]): row for row in csv.DictReader(handle)}
    counts = {
        key: (int(row["Request Count"]), int(row["Failure Count"])) for key, row in rows.items()
    }
    assert counts[("POST", "/v1/chat/completions")] == (len(records), len(records) - ok)
    for name in ("TTFT", "TPOT", "E2E"):
        assert counts[("LLM", name)] == (ok, 0), name
    assert counts[("", "Aggregated")] == counts[("POST", "/v1/chat/completions")]
    e2e = sorted(r["e2e_ms"] for r in records if r["outcome"] == "ok")
    assert float(rows[("LLM", "E2E")]["Average Response Time"]) == pytest.approx(
        sum(e2e) / len(e2e), rel=1e-3
    )


@pytest.mark.parametrize("mode", ["concurrency", "rate", "batch"])
def test_workers_counts_extend_a_short_stage_until_it_has_its_samples(
    mode: str, tmp_path: Path
) -> None:
    """The master ends a stage only once its workers' ok requests reach the count (custom
    messages), and the window it writes is the one the workers labelled their requests by."""
    proc, url = start_sim("--timing", "fixed", "--ttft-ms", "30", "--itl-ms", "1", "--port", "0")
    try:
        # 2 users, 10 req/s or batches of 2 for 1 s: ~20-60 ok requests; 59 are needed.
        load = "10,20" if mode == "rate" else "2,4"
        args = ("--qb-mode", mode, "--qb-arrival", "constant", "--qb-stages", load,
                "--qb-warmup", "0s", "--qb-stage-duration", "1s")  # fmt: skip
        result = subprocess.run(locust(url, tmp_path, *args), cwd=REPO_ROOT,
                                capture_output=True, text=True, timeout=120)  # fmt: skip
    finally:
        stop_sim(proc)
    assert result.returncode == 0, result.stderr[-2000:]
    first, second = lines(tmp_path / "stages.jsonl")
    records = lines(tmp_path / "requests.jsonl")
    mine = [r for r in records if r["stage"] == 0]
    ok_ends = sorted(r["end_ns"] for r in mine if r["outcome"] == "ok")
    assert first["ended_by"] == "samples" and len(ok_ends) >= 59
    assert first["end_ns"] >= ok_ends[58], "the stage ended only after its 59th ok request"
    assert first["end_ns"] - first["start_ns"] > 1e9  # longer than its 1 s
    assert all(r["scheduled_ns"] < first["end_ns"] for r in mine), "labelled by the window"
    assert all(r["scheduled_ns"] >= second["start_ns"] for r in records if r["stage"] == 1)
    assert second["start_ns"] == first["end_ns"]
