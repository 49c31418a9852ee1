"""`quantbench.search_run.run_search` on a scripted server: each stage's records come from a
queue whose capacity is known exactly, on a simulated clock — no Locust, no real time — so
the search's convergence, its verdicts from the records and search.jsonl are checked
deterministically (the end-to-end run against a real simulator is test_search_run.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console

from loadtest.config import EndpointSpec, LoadConfig, LocustSettings, SearchConfig, SloLimit
from loadtest.records import (
    REQUESTS_FILE,
    STAGES_FILE,
    Outcome,
    RecordWriter,
    RequestRecord,
    StageRecord,
)
from loadtest.search import SearchStep, replay
from quantbench.locustproc import LocustProgress
from quantbench.search_run import run_search

CAPACITY = 37.0  # req/s the scripted server completes at most (one at a time, FIFO)
BASE_MS = 20.0  # its TTFT with no queue
WARMUP_S, MEASURE_S = 5.0, 30.0


def queue_server(
    run_dir: Path, behind_above: float | None = None
) -> Callable[[LocustSettings, Callable[[LocustProgress], None]], None]:
    """Writes a stage's records as a D/D/1 queue serves a constant schedule: request i,
    due at i/λ, starts when the one before it is done; TTFT = wait + BASE_MS. Above
    `behind_above` req/s the generator is 50 ms behind its schedule."""

    def run_stage(settings: LocustSettings, _: Callable[[LocustProgress], None]) -> None:
        rate, stage = settings.load.stages[0], settings.stage_offset
        requests, stages = (
            RecordWriter(run_dir / REQUESTS_FILE),
            RecordWriter(run_dir / STAGES_FILE),
        )
        free_s, i = 0.0, 0
        while (due_s := i / rate) < WARMUP_S + MEASURE_S:
            start_s = max(due_s, free_s)
            free_s = start_s + 1 / CAPACITY
            ttft_ms = (start_s - due_s) * 1000 + BASE_MS
            requests.write(RequestRecord(
                target="t", stage=stage, mode="rate", load=rate, warmup=due_s < WARMUP_S,
                outcome=Outcome.OK, scheduled_ns=int(due_s * 1e9), ttft_ms=ttft_ms,
                output_tokens=8,
                schedule_lag_ms=50.0 if behind_above and rate > behind_above else 0.1,
            ))  # fmt: skip
            i += 1
        stages.write(StageRecord(
            target="t", stage=stage, mode="rate", load=rate, warmup_s=WARMUP_S,
            start_wall_s=0.0, end_wall_s=WARMUP_S + MEASURE_S, start_ns=0,
            end_ns=int((WARMUP_S + MEASURE_S) * 1e9), ended_by="duration",
        ))  # fmt: skip

    return run_stage


@pytest.mark.parametrize("start", [2.0, 30.0, 200.0])  # 2 req/s: 60 samples in 30 s
def test_the_search_lands_within_its_precision_of_the_queue_s_capacity(
    tmp_path: Path, start: float
) -> None:
    settings = LocustSettings(
        endpoint=EndpointSpec(name="t"), load=LoadConfig(mode="rate", stages=[1.0]),
        run_dir=tmp_path,
    )  # fmt: skip
    config = SearchConfig(start=start, precision=0.05)
    slo = [SloLimit(metric="ttft", quantile=0.95, limit_ms=BASE_MS + 50)]
    search = run_search(settings, config, slo, Console(quiet=True), queue_server(tmp_path))
    answer = search.answer()
    assert answer.status == "found" and answer.rate is not None
    # below capacity nothing waits; above it, the queue passes 50 ms within 30 s at any
    # excess over ~0.2%: the SLO breaks at the capacity itself
    assert abs(answer.rate - CAPACITY) <= 0.05 * CAPACITY, search.answer()
    steps = [json.loads(x) for x in (tmp_path / "search.jsonl").read_text().splitlines()]
    stages = [json.loads(x) for x in (tmp_path / STAGES_FILE).read_text().splitlines()]
    assert [s["stage"] for s in steps] == [s["stage"] for s in stages] == list(range(len(steps)))
    for step in steps:  # each verdict is what the records say
        assert step["verdict"] == ("met" if step["rate"] <= CAPACITY else "broken"), step
    assert (steps[-1]["low"], steps[-1]["high"]) == (answer.low, answer.high)


def test_a_stage_the_generator_fell_behind_on_counts_as_broken(tmp_path: Path) -> None:
    # The queue meets the SLO up to 37 req/s, but above 20 req/s the generator could not keep
    # its schedule: the search must not call those rates met.
    settings = LocustSettings(
        endpoint=EndpointSpec(name="t"), load=LoadConfig(mode="rate", stages=[1.0]),
        run_dir=tmp_path,
    )  # fmt: skip
    config = SearchConfig(start=10.0, precision=0.05)
    slo = [SloLimit(metric="ttft", quantile=0.95, limit_ms=50.0)]
    search = run_search(
        settings, config, slo, Console(quiet=True), queue_server(tmp_path, behind_above=20.0),
        max_schedule_lag_ms=5.0,
    )  # fmt: skip
    answer = search.answer()
    # "at least" the highest rate kept on schedule, the generator named as the limit: not
    # a limit of the target (which the rates it could not offer never showed)
    assert answer.status == "above_max" and answer.low is not None, answer
    assert 20.0 / 1.05 <= answer.low <= 20.0, answer
    assert "the generator kept its schedule" in answer.text(), answer.text()
    steps = [json.loads(x) for x in (tmp_path / "search.jsonl").read_text().splitlines()]
    assert all(s["verdict"] is None and s["behind"] for s in steps if s["rate"] > 20.0)
    assert any(s["rate"] > 20.0 for s in steps)
    assert replay([SearchStep.model_validate(s) for s in steps], config)[0].answer() == answer


def test_a_search_killed_between_stages_goes_on_from_its_journal(tmp_path: Path) -> None:
    # A search stopped after its third stage (as `kill` leaves it: search.jsonl holds the
    # decided steps) and started again on the same run directory (what `--resume` does) ends
    # with the same path and answer as one that ran through.
    settings = LocustSettings(
        endpoint=EndpointSpec(name="t"), load=LoadConfig(mode="rate", stages=[1.0]),
        run_dir=tmp_path / "killed",
    )  # fmt: skip
    settings.run_dir.mkdir()
    config = SearchConfig(start=30.0, precision=0.05)
    slo = [SloLimit(metric="ttft", quantile=0.95, limit_ms=BASE_MS + 50)]
    serve = queue_server(settings.run_dir)
    calls = 0

    def killed_at_the_fourth(s: LocustSettings, progress: Callable[[LocustProgress], None]) -> None:
        nonlocal calls
        calls += 1
        if calls == 4:
            raise KeyboardInterrupt  # the stage never ran: nothing of it is recorded
        serve(s, progress)

    with pytest.raises(KeyboardInterrupt):
        run_search(settings, config, slo, Console(quiet=True), killed_at_the_fourth)
    journal = settings.run_dir / "search.jsonl"
    assert len(journal.read_text().splitlines()) == 3
    resumed = run_search(settings, config, slo, Console(quiet=True), serve)

    through = settings.model_copy(update={"run_dir": tmp_path / "through"})
    through.run_dir.mkdir()
    whole = run_search(through, config, slo, Console(quiet=True), queue_server(through.run_dir))
    assert resumed.answer() == whole.answer() and resumed.answer().status == "found"
    assert journal.read_text() == (through.run_dir / "search.jsonl").read_text()
    stages = [json.loads(x)["stage"] for x in (settings.run_dir / STAGES_FILE).open()]
    assert stages == list(range(len(stages)))  # no stage number reused or skipped
