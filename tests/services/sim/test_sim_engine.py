"""Engine timing on a scripted clock: exact due times, batching, admission limits, saturation."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from services.sim import BatchingEngine, EngineProfile, FixedEngine, SimSequence, load_profile
from services.sim.engine import FinishEvent, FinishReason, NullObserver, TokenEvent


class Recorder(NullObserver):
    """Keeps what the metrics exporter would see."""

    def __init__(self) -> None:
        self.finished: list[tuple[int, FinishReason]] = []
        self.max_running = 0
        self.max_waiting = 0
        self.steps: list[int] = []
        self.preempted: list[int] = []
        self.admitted: list[int] = []

    def on_finished(self, seq: SimSequence, reason: FinishReason) -> None:
        self.finished.append((seq.seq_id, reason))

    def on_step(self, scheduled_tokens: int) -> None:
        self.steps.append(scheduled_tokens)

    def on_preempted(self, seq: SimSequence) -> None:
        self.preempted.append(seq.seq_id)

    def on_admitted(self, seq: SimSequence, queue_time_s: float) -> None:
        self.admitted.append(seq.seq_id)

    def on_gauges(self, running: int, waiting: int, kv_usage: float) -> None:
        assert 0.0 <= kv_usage <= 1.0
        self.max_running = max(self.max_running, running)
        self.max_waiting = max(self.max_waiting, waiting)


def _profile(**overrides: Any) -> EngineProfile:
    fields: dict[str, Any] = {
        "max_num_seqs": 256,
        "max_num_batched_tokens": 1024,
        "kv_cache_tokens": 1_000_000,
        "decode_step_base_ms": 10.0,
        "decode_step_per_seq_ms": 1.0,
        "prefill_ms_per_token": 0.1,
    }
    return EngineProfile(**(fields | overrides))


async def _dues(seq: SimSequence) -> list[float]:
    return [event.due for event in [e async for e in seq]]


def _run_batch(
    profile: EngineProfile, clock: Any, requests: list[tuple[int, int]]
) -> tuple[list[list[float]], list[SimSequence], Recorder]:
    recorder = Recorder()

    async def main() -> tuple[list[list[float]], list[SimSequence]]:
        engine = BatchingEngine(profile, recorder, clock=clock, sleep=clock.sleep)
        seqs = [engine.submit(p, m) for p, m in requests]
        dues = await asyncio.gather(*(_dues(s) for s in seqs))
        await engine.aclose()
        return list(dues), seqs

    dues, seqs = asyncio.run(main())
    return dues, seqs, recorder


def test_fixed_engine_due_times_are_exact(fake_clock: Any) -> None:
    async def main() -> tuple[list[float], SimSequence]:
        engine = FixedEngine(50.0, 10.0, clock=fake_clock, call_at=fake_clock.call_at)
        seq = engine.submit(prompt_tokens=12, max_tokens=4)
        return await _dues(seq), seq

    dues, seq = asyncio.run(main())
    assert dues == [100.0 + 0.05 + k * 0.01 for k in range(4)]
    assert seq.finished_reason == "length"
    assert (seq.arrival, seq.admitted, seq.first_token, seq.last_token) == (
        100.0,
        100.0,
        dues[0],
        dues[-1],
    )


def test_fixed_engine_on_the_real_loop_delivers_in_order_never_early() -> None:
    """On the real loop (`call_at`, no scripted clock) every token arrives, in order, at its
    exact simulated due time and never before it less the timer slack. How late is left to
    `make bench`: real timer lateness on a shared 2-core machine is no unit-test figure."""

    async def main() -> tuple[list[float], list[float], float]:
        loop = asyncio.get_running_loop()
        seq = FixedEngine(20.0, 5.0).submit(prompt_tokens=3, max_tokens=5)
        got = [(loop.time(), event.due) async for event in seq]
        return [now for now, _ in got], [due for _, due in got], seq.arrival

    seen, dues, arrival = asyncio.run(main())
    assert dues == pytest.approx([arrival + 0.020 + k * 0.005 for k in range(5)], abs=1e-9)
    assert seen == sorted(seen)
    assert all(
        now >= due - FixedEngine.timer_slack_s - 1e-6 for now, due in zip(seen, dues, strict=True)
    )


def test_batching_single_sequence_prefill_then_decode_steps(fake_clock: Any) -> None:
    dues, [seq], recorder = _run_batch(_profile(), fake_clock, [(100, 4)])
    # prefill step: 10 ms base + 100 x 0.1 ms; each decode step: 10 ms + 1 x 1 ms
    assert dues[0] == pytest.approx([100.020, 100.031, 100.042, 100.053])
    assert recorder.steps == [100, 1, 1, 1]
    ttft = seq.first_token - seq.arrival  # type: ignore[operator]
    itls = [b - a for a, b in itertools.pairwise(dues[0])]
    assert seq.last_token - seq.arrival == pytest.approx(ttft + sum(itls), abs=1e-9)  # type: ignore[operator]


def test_batching_step_time_grows_with_batch(fake_clock: Any) -> None:
    dues, _, _ = _run_batch(_profile(), fake_clock, [(10, 5)] * 8)
    for seq_dues in dues:
        gaps = [b - a for a, b in itertools.pairwise(seq_dues)]
        assert gaps == pytest.approx([0.010 + 8 * 0.001] * 4), "ITL = base + per_seq x batch"


def test_batching_chunked_prefill_respects_token_budget(fake_clock: Any) -> None:
    _, _, recorder = _run_batch(
        _profile(max_num_seqs=8, max_num_batched_tokens=128), fake_clock, [(300, 2)]
    )
    assert recorder.steps == [128, 128, 44, 1]


def test_batching_queues_beyond_max_num_seqs(fake_clock: Any) -> None:
    _, seqs, recorder = _run_batch(_profile(max_num_seqs=4), fake_clock, [(10, 3)] * 10)
    assert recorder.max_running == 4
    assert recorder.max_waiting == 10
    first_done = min(s.last_token for s in seqs[:4])  # type: ignore[type-var]
    assert all(s.admitted >= first_done for s in seqs[4:])  # type: ignore[operator]
    assert all(s.finished_reason == "length" for s in seqs)


def test_batching_kv_budget_limits_admission(fake_clock: Any) -> None:
    # each sequence reserves 20 + 30 KV tokens, so only two fit in 100
    _, seqs, recorder = _run_batch(_profile(kv_cache_tokens=100), fake_clock, [(20, 30)] * 5)
    assert recorder.max_running == 2
    assert seqs[2].admitted == max(seqs[0].last_token, seqs[1].last_token)  # type: ignore[type-var]
    assert recorder.preempted == []


def test_on_demand_kv_preempts_the_latest_admitted_which_recomputes(fake_clock: Any) -> None:
    # three prompts of 20 fit in 100 KV tokens; growing by one token a step each, they do
    # not: the last admitted is preempted, waits for room, then recomputes 20 + its tokens
    profile = _profile(kv_cache_tokens=100, kv_allocation="on_demand")
    dues, seqs, recorder = _run_batch(profile, fake_clock, [(20, 30)] * 3)
    assert recorder.preempted == [2]
    assert seqs[2].preemptions == 1
    assert recorder.admitted == [0, 1, 2], "a resumed sequence is not admitted again"
    assert all(s.finished_reason == "length" and s.generated == 30 for s in seqs)
    assert [len(d) for d in dues] == [30, 30, 30]
    generated_before = seqs[2].recompute
    assert 0 < generated_before < 30
    assert 20 + generated_before in recorder.steps, "the recompute is one prefill step"
    gaps = [b - a for a, b in itertools.pairwise(dues[2])]
    resumed_at = max(seqs[0].last_token, seqs[1].last_token)  # type: ignore[type-var]
    assert max(gaps) > resumed_at - dues[2][generated_before - 1] - 1e-9, "the stream paused"
    assert dues[2][generated_before] > resumed_at
    for seq_dues in dues[:2]:  # the others never paused
        assert max(b - a for a, b in itertools.pairwise(seq_dues)) < 0.02


def test_batching_throughput_saturates_with_load(clock_factory: Any) -> None:
    profile = load_profile("vllm", "awq", "h100")
    rates, itls = {}, {}
    for users in (1, 64, 256, 512):
        dues, _, _ = _run_batch(profile, clock_factory(), [(200, 128)] * users)
        span = max(d[-1] for d in dues) - 100.0
        rates[users] = users * 128 / span
        itls[users] = dues[0][-1] - dues[0][-2]
    # prefill of 64 x 200 prompt tokens is not free, so less than the pure decode ratio
    assert rates[64] > 10 * rates[1], rates
    assert itls[64] > 2.5 * itls[1], itls
    assert rates[512] < 1.1 * rates[256], "decode throughput saturates near 1/per_seq_ms"


def test_abort_releases_and_reports(fake_clock: Any) -> None:
    recorder = Recorder()

    async def main() -> tuple[SimSequence, SimSequence, list[float]]:
        engine = BatchingEngine(
            _profile(max_num_seqs=1), recorder, clock=fake_clock, sleep=fake_clock.sleep
        )
        running, queued = engine.submit(10, 50), engine.submit(10, 2)
        await asyncio.sleep(0)
        engine.abort(queued)
        engine.abort(running)
        engine.abort(running)  # a second abort is a no-op
        late = engine.submit(10, 2)
        dues = await _dues(late)
        await engine.aclose()
        return running, queued, dues

    running, queued, dues = asyncio.run(main())
    assert running.finished_reason == queued.finished_reason == "abort"
    assert [r for _, r in recorder.finished] == ["abort", "abort", "length"]
    assert len(dues) == 2


def test_idle_engine_does_not_spin(fake_clock: Any) -> None:
    async def main() -> tuple[float, float]:
        engine = BatchingEngine(_profile(), clock=fake_clock, sleep=fake_clock.sleep)
        await _dues(engine.submit(5, 2))
        idle_at = fake_clock.now
        for _ in range(20):
            await asyncio.sleep(0)
        second = engine.submit(5, 1)
        await _dues(second)
        await engine.aclose()
        return idle_at, second.arrival

    idle_at, later_arrival = asyncio.run(main())
    assert later_arrival == idle_at, "an idle step loop must wait, not advance the clock"


def test_fixed_engine_burst_gives_tokens_in_groups_at_the_same_rate(fake_clock: Any) -> None:
    """burst=3: tokens 0-2 due together, 3-5 three ITLs later, and so on (benchmarks feed a
    client several events per server write this way)."""

    async def main() -> tuple[list[list[float]], SimSequence]:
        engine = FixedEngine(50.0, 10.0, clock=fake_clock, call_at=fake_clock.call_at, burst=3)
        seq = engine.submit(prompt_tokens=12, max_tokens=7)
        return [[e.due for e in batch] async for batch in seq.batches()], seq

    batches, seq = asyncio.run(main())
    first = 100.0 + 0.05
    assert batches == [[first] * 3, [first + 0.03] * 3, [first + 0.06]]
    assert seq.generated == 7 and seq.finished_reason == "length"


def test_batches_hold_every_event_produced_before_the_reader_ran() -> None:
    """A reader that falls behind gets what is waiting in one batch, in order."""

    async def main() -> list[list[float]]:
        seq = SimSequence(0, prompt_tokens=1, max_tokens=3, arrival=0.0)
        for due in (1.0, 2.0):
            seq.events.put_nowait(TokenEvent(due))
        batches = seq.batches()
        got = [[e.due for e in await anext(batches)]]
        seq.events.put_nowait(TokenEvent(3.0))
        seq.events.put_nowait(FinishEvent("length", 3.0))
        got += [[e.due for e in batch] async for batch in batches]
        return got

    assert asyncio.run(main()) == [[1.0, 2.0], [3.0]]
