"""Each fault switch changes what a load test records, shown with the load generator's client."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from loadtest.clients import CLIENTS
from loadtest.clients.base import RequestContext
from loadtest.config import EndpointSpec, TimeoutConfig, WorkloadConfig
from loadtest.records import Outcome, RequestRecord
from loadtest.transport import HttpxTransport
from loadtest.workload import GenRequest
from services.sim import FixedEngine, SimSequence
from services.sim.config import ErrorFault, FaultConfig
from services.sim.faults import FaultPlan
from tests.procs import start_sim, stop_sim

FIXED = ("--timing", "fixed", "--ttft-ms", "5", "--itl-ms", "2", "--port", "0")


@pytest.fixture
def sim() -> Iterator[Any]:
    started: list[Any] = []

    def start(*args: str) -> str:
        proc, url = start_sim(*FIXED, *args)
        started.append(proc)
        return url

    yield start
    for proc in started:
        stop_sim(proc)


def generate(
    url: str, max_tokens: int = 8, timeout_s: float = 10.0, stack: str = "vllm"
) -> RequestRecord:
    transport = HttpxTransport(url, timeout_s=timeout_s)
    try:
        timeouts = TimeoutConfig(connect=timeout_s, ttft=timeout_s, total=timeout_s)
        api = "tgi" if stack == "tgi" else "openai"
        endpoint = EndpointSpec(stack=stack, api=api)  # type: ignore[arg-type]
        client = CLIENTS[api](transport, endpoint, WorkloadConfig(), timeouts)
        request = GenRequest("hello world", 2, max_tokens)
        return client.execute(
            request, RequestContext("t", 0, "concurrency", 1, time.perf_counter_ns())
        )
    finally:
        transport.close()


def test_draws_follow_the_rates_and_the_seed() -> None:
    config = FaultConfig(
        errors=[ErrorFault(status=429, rate=0.2)], cut_rate=0.1, hang_rate=0.05, seed=4
    )
    plan = FaultPlan(config)
    draws = [plan.draw() for _ in range(20_000)]
    kinds = Counter((f.kind, f.status) for f in draws)
    assert kinds[("error", 429)] == pytest.approx(4000, rel=0.08)
    assert kinds[("cut", None)] == pytest.approx(2000, rel=0.1)
    assert kinds[("hang", None)] == pytest.approx(1000, rel=0.15)
    assert all(f.after_events == 2 for f in draws if f.kind == "cut")
    again = FaultPlan(config)
    assert [again.draw() for _ in range(200)] == draws[:200]


def test_rates_above_one_are_rejected() -> None:
    with pytest.raises(ValidationError, match="must not exceed 1"):
        FaultConfig(cut_rate=0.6, hang_rate=0.5)


def test_stall_pushes_back_every_token_due_inside_or_after_it(fake_clock: Any) -> None:
    # Server started at 100.0; stall from 100.03 for 0.1 s; tokens due at 100.01 + k * 0.01.
    plan = FaultPlan(FaultConfig(stall_at_s=0.03, stall_for_s=0.1), t0=100.0)

    async def main() -> list[float]:
        seq: SimSequence = FixedEngine(
            10.0, 10.0, clock=fake_clock, call_at=fake_clock.call_at, faults=plan
        ).submit(prompt_tokens=1, max_tokens=5)
        return [event.due async for event in seq]

    dues = asyncio.run(main())
    assert dues == pytest.approx([100.01, 100.02, 100.13, 100.14, 100.15])
    assert plan.stalled(100.05, 100.06) == pytest.approx(100.14)  # arrived inside the stall


def test_error_fault_is_an_http_error(sim: Any) -> None:
    record = generate(sim("--error", "503:1"))
    assert (record.outcome, record.http_status) == (Outcome.HTTP_ERROR, 503)
    assert "Injected fault" in (record.error or "")


def test_cut_stream_is_truncated(sim: Any) -> None:
    record = generate(sim("--cut-rate", "1"))
    assert record.outcome is Outcome.TRUNCATED_STREAM
    assert record.events == 2  # cut after `fault_after_events` (2) events


def test_malformed_event_is_reported(sim: Any) -> None:
    record = generate(sim("--malformed-rate", "1"))
    assert record.outcome is Outcome.MALFORMED_EVENT


def test_hung_request_times_out(sim: Any) -> None:
    record = generate(sim("--hang-rate", "1"), timeout_s=0.5)
    assert record.outcome is Outcome.TIMEOUT_TTFT


def test_slow_start_refuses_connections_then_serves(sim: Any) -> None:
    url = sim("--refuse-for", "1.0")
    assert generate(url).outcome is Outcome.CONNECT_ERROR
    deadline = time.monotonic() + 10
    while (record := generate(url)).outcome is Outcome.CONNECT_ERROR:
        assert time.monotonic() < deadline, "never started serving"
    assert record.outcome is Outcome.OK


def _logged(log: Path, count: int) -> list[dict[str, Any]]:
    """The simulator's own account of its first `count` requests (written once answered)."""
    deadline = time.monotonic() + 10
    while len(lines := log.read_text().splitlines() if log.exists() else []) < count:
        assert time.monotonic() < deadline, "the simulator never logged its requests"
        time.sleep(0.01)
    return [json.loads(line) for line in lines]


def test_stall_shows_as_one_long_gap(sim: Any, tmp_path: Path) -> None:
    """Timed from the first request (`--times-from first_request`), the stall hits the
    middle of the stream whenever the test gets to send it; the simulated due times in the
    log show it exactly: 399 gaps of 2 ms plus the 0.4 s stall."""
    log = tmp_path / "sim.jsonl"
    url = sim("--times-from", "first_request", "--stall-at", "0.2", "--stall-for", "0.4",
              "--request-log", str(log))  # fmt: skip
    record = generate(url, max_tokens=400)
    assert record.outcome is Outcome.OK and record.output_tokens == 400
    [entry] = _logged(log, 1)
    assert entry["last_token"] - entry["first_token"] == pytest.approx(399 * 0.002 + 0.4, abs=1e-6)
    assert max(record.itl_ms) > 100 * sorted(record.itl_ms)[len(record.itl_ms) // 2] / 10


def test_slowdown_and_speed_scale_decode_time(sim: Any, tmp_path: Path) -> None:
    slow_log, fast_log = tmp_path / "slow.jsonl", tmp_path / "fast.jsonl"
    slow = generate(sim("--slowdown", "3", "--request-log", str(slow_log)), max_tokens=30)
    fast = generate(
        sim("--speed", "4", "--itl-ms", "8", "--request-log", str(fast_log)), max_tokens=30
    )
    assert slow.outcome is Outcome.OK and fast.outcome is Outcome.OK
    for log, itl_s in ((slow_log, 0.006), (fast_log, 0.002)):  # 2 ms x 3; 8 ms / 4
        [entry] = _logged(log, 1)
        assert (entry["last_token"] - entry["first_token"]) / 29 == pytest.approx(itl_s, abs=1e-7)


def _samples(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    return {
        s.name + json.dumps(s.labels, sort_keys=True): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _successes(samples: dict[str, float]) -> float:
    """Finished-ok requests, whatever the stack calls them."""
    names = ("vllm:request_success_total", "exllamav2:request_success_total")
    return sum(
        value
        for key, value in samples.items()
        if key.startswith("tgi_request_success_total")
        or (key.startswith(names) and '"finished_reason": "length"' in key)
    )


@pytest.mark.parametrize(
    ("stack", "quant"), [("vllm", "awq"), ("tgi", "awq"), ("exllamav2", "exl2")]
)
def test_restart_resets_counters_and_moves_process_start(sim: Any, stack: str, quant: str) -> None:
    """`--restart-after-requests 2`: restarts once two requests were answered, however long
    the test took to send them (no dependence on when it started)."""
    url = sim("--stack", stack, "--quant", quant, "--restart-after-requests", "2",
              "--restart-down", "0.3")  # fmt: skip
    assert generate(url, stack=stack).outcome is Outcome.OK
    before = _samples(url)
    assert _successes(before) == 1
    assert generate(url, stack=stack).outcome is Outcome.OK  # the second: the restart follows
    start = "process_start_time_seconds{}"
    assert (start in before) is (stack != "tgi"), "TGI exports no process series"
    deadline = time.monotonic() + 15
    while True:
        assert time.monotonic() < deadline, "no restart seen"
        try:
            after = _samples(url)
        except httpx.HTTPError:
            after = {}  # down while restarting
        if stack == "tgi" and after and _successes(after) == 0:
            break  # its only sign of a restart: the counter is back to 0
        if after.get(start, 0.0) > before.get(start, math.inf):
            break
    assert _successes(after) == 0


def test_request_log_counts_what_was_injected(sim: Any, tmp_path: Path) -> None:
    log = tmp_path / "sim.jsonl"
    url = sim(
        "--error", "429:0.3", "--cut-rate", "0.2", "--request-log", str(log), "--fault-seed", "1"
    )
    outcomes = Counter(generate(url).outcome for _ in range(40))
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    injected = Counter(e["fault"] for e in entries)
    assert len(entries) == 40
    assert outcomes[Outcome.HTTP_ERROR] == injected["error"] > 0
    assert outcomes[Outcome.TRUNCATED_STREAM] == injected["cut"] > 0
    assert outcomes[Outcome.OK] == injected["none"]
    done = [e for e in entries if e["fault"] == "none"]
    assert all(e["tokens_sent"] == 8 and e["first_token"] > e["arrival"] for e in done)


@pytest.mark.parametrize(("stack", "quant"), [("tgi", "awq"), ("exllamav2", "exl2")])
def test_request_faults_reach_every_personality(sim: Any, stack: str, quant: str) -> None:
    base = ("--stack", stack, "--quant", quant)
    error = generate(sim(*base, "--error", "503:1"), stack=stack)
    assert (error.outcome, error.http_status) == (Outcome.HTTP_ERROR, 503)
    cut = generate(sim(*base, "--cut-rate", "1"), stack=stack)
    assert cut.outcome is Outcome.TRUNCATED_STREAM
    malformed = generate(sim(*base, "--malformed-rate", "1"), stack=stack)
    assert malformed.outcome is Outcome.MALFORMED_EVENT
    hung = generate(sim(*base, "--hang-rate", "1"), stack=stack, timeout_s=0.5)
    assert hung.outcome is Outcome.TIMEOUT_TTFT
    stalled_at_first = ("--times-from", "first_request", "--stall-at", "0", "--stall-for", "0.6")
    stalled = generate(sim(*base, *stalled_at_first), stack=stack)
    assert stalled.outcome is Outcome.OK and stalled.ttft_ms is not None
    assert stalled.ttft_ms >= 590, "the first token is due after the stall, never before"


def test_an_engine_abort_ends_the_vllm_stream_as_vllm_does(sim: Any, tmp_path: Path) -> None:
    """vLLM 0.33: a normal last chunk with finish_reason "abort", then usage and [DONE]; the
    client must not count it as ok; the server counts it under finished_reason="abort"."""
    log = tmp_path / "sim.jsonl"
    url = sim("--abort-rate", "1", "--fault-after-events", "3", "--request-log", str(log))
    record = generate(url)
    assert record.outcome is Outcome.ABORTED and record.output_tokens == 3
    body = {
        "prompt": "x",
        "max_tokens": 8,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    events = [e for e in httpx.post(f"{url}/v1/completions", json=body).text.split("\n\n") if e]
    last = json.loads(events[-3].removeprefix("data: "))
    assert last["choices"][0] | {"text": last["choices"][0]["text"]} == {
        "index": 0, "text": "", "logprobs": None, "finish_reason": "abort", "stop_reason": None,
        "prompt_token_ids": None, "token_ids": None, "weight_versions": None,
    }  # fmt: skip
    assert json.loads(events[-2].removeprefix("data: "))["usage"]["completion_tokens"] == 3
    assert events[-1] == "data: [DONE]"
    samples = _samples(url)
    aborted = 'vllm:request_success_total{"engine": "0", "finished_reason": "abort", '
    assert [v for k, v in samples.items() if k.startswith(aborted)] == [2.0]
    labels = '{"engine": "0", "model_name": "sim/llama-3.1-8b-instruct-awq"}'
    assert samples["vllm:request_decode_time_seconds_count" + labels] == 2, "phases at finish"
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(e["finished_reason"], e["tokens_sent"]) for e in entries] == [("abort", 3)] * 2


@pytest.mark.parametrize(("stack", "quant"), [("tgi", "awq"), ("exllamav2", "exl2")])
def test_an_engine_abort_is_an_error_event_on_other_stacks(
    sim: Any, stack: str, quant: str
) -> None:
    record = generate(sim("--stack", stack, "--quant", quant, "--abort-rate", "1"), stack=stack)
    assert record.outcome is Outcome.SERVER_ERROR_EVENT
