"""Engine models of the simulator: when each generated token of each request is due.

`BatchingEngine` imitates vLLM's continuous batching with chunked prefill, so latency rises and
throughput saturates with load; `FixedEngine` gives exact ground-truth latencies for tests.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from services.sim.config import EngineProfile
from services.sim.faults import FaultPlan
from services.sim.prefix_cache import PrefixCache, block_hashes

__all__ = [
    "BatchingEngine",
    "CallAt",
    "Clock",
    "EngineObserver",
    "FinishEvent",
    "FinishReason",
    "FixedEngine",
    "NullObserver",
    "SimEngine",
    "SimSequence",
    "Sleep",
    "TokenEvent",
]

FinishReason = Literal["stop", "length", "abort", "error", "repetition"]
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


CallAt = Callable[..., TimerHandle]  # loop.call_at(when, callback, *args)


@dataclass(frozen=True, slots=True)
class TokenEvent:
    """`n_tokens` new tokens, produced at clock time `due`."""

    due: float
    n_tokens: int = 1


@dataclass(frozen=True, slots=True)
class FinishEvent:
    """The sequence ended (always the last event on its queue)."""

    reason: FinishReason
    at: float


@dataclass(eq=False)
class SimSequence:
    """One request inside the engine: its token queue and timestamps (engine clock, seconds)."""

    seq_id: int
    prompt_tokens: int
    max_tokens: int
    arrival: float
    events: asyncio.Queue[TokenEvent | FinishEvent] = field(default_factory=asyncio.Queue)
    admitted: float | None = None
    first_token: float | None = None
    last_token: float | None = None
    finished: float | None = None
    finished_reason: FinishReason | None = None
    prefilled: int = 0
    generated: int = 0
    #: generated tokens whose KV a preemption dropped: recomputed like prompt on resume
    recompute: int = 0
    preemptions: int = 0
    #: the client went away (vLLM records no finish statistics for it)
    cancelled: bool = False
    #: an injected engine-side abort after this many tokens (None: none)
    abort_after: int | None = None
    #: prefix caching: the chained hashes of the prompt's full blocks, how many leading ones
    #: this sequence holds in the cache now, and the prompt tokens its first admission found
    #: cached (vLLM's prefix-cache hits; their prefill was skipped)
    cache_lookup: bool = False  # its prompt was looked up in the prefix cache
    block_hashes: list[int] = field(default_factory=list)
    held_blocks: int = 0
    cached_tokens: int = 0

    @property
    def prefill_target(self) -> int:
        """Tokens to compute before the next token can be sampled (prompt, then recompute)."""
        return self.prompt_tokens + self.recompute

    @property
    def kv_tokens(self) -> int:
        """Tokens whose KV this sequence holds now."""
        return self.prefilled + self.generated - self.recompute

    def __aiter__(self) -> AsyncIterator[TokenEvent]:
        """Token events until the finish marker; `finished_reason` is set afterwards."""
        return self._tokens()

    async def _tokens(self) -> AsyncIterator[TokenEvent]:
        while True:
            event = await self.events.get()
            if isinstance(event, FinishEvent):
                return
            yield event

    async def batches(self) -> AsyncIterator[list[TokenEvent]]:
        """Token events as they come, every event already produced in one batch (a burst, or
        a server running late): a stream writes each batch at once."""
        events = self.events
        while True:
            batch: list[TokenEvent] = []
            event = await events.get()
            while not isinstance(event, FinishEvent):
                batch.append(event)
                if events.empty():
                    break
                event = events.get_nowait()
            if batch:
                yield batch
            if isinstance(event, FinishEvent):
                return


class EngineObserver(Protocol):
    """Hooks the metrics exporter implements; all times in seconds of the engine clock."""

    def on_queued(self, seq: SimSequence) -> None: ...
    def on_admitted(self, seq: SimSequence, queue_time_s: float) -> None: ...
    def on_first_token(self, seq: SimSequence, ttft_s: float) -> None: ...
    def on_token(self, seq: SimSequence, gap_s: float) -> None: ...
    def on_finished(self, seq: SimSequence, reason: FinishReason) -> None: ...
    def on_preempted(self, seq: SimSequence) -> None: ...
    def on_step(self, scheduled_tokens: int) -> None: ...
    def on_gauges(self, running: int, waiting: int, kv_usage: float) -> None: ...


class NullObserver:
    """An observer that records nothing."""

    def on_queued(self, seq: SimSequence) -> None:
        pass

    def on_admitted(self, seq: SimSequence, queue_time_s: float) -> None:
        pass

    def on_first_token(self, seq: SimSequence, ttft_s: float) -> None:
        pass

    def on_token(self, seq: SimSequence, gap_s: float) -> None:
        pass

    def on_finished(self, seq: SimSequence, reason: FinishReason) -> None:
        pass

    def on_preempted(self, seq: SimSequence) -> None:
        pass

    def on_step(self, scheduled_tokens: int) -> None:
        pass

    def on_gauges(self, running: int, waiting: int, kv_usage: float) -> None:
        pass


class SimEngine(ABC):
    """Common interface: `submit` a request, read its events, `cancel` it, `aclose` at exit.

    The simulator generates exactly `max_tokens` tokens (finish reason "length") unless the
    engine aborts the sequence (an injected `abort_rate` fault: "abort"; closing: "error").
    """

    # asyncio timers fire up to 1 ms late (epoll rounds timeouts up to whole milliseconds), so
    # waking half of that early centres real delivery on the due time; `due` stays exact.
    timer_slack_s = 0.0005

    def __init__(
        self,
        observer: EngineObserver | None,
        clock: Clock | None,
        sleep: Sleep | None,
        faults: FaultPlan | None = None,
    ) -> None:
        self._observer: EngineObserver = observer or NullObserver()
        self._faults = faults
        self._clock = clock  # None: the running loop's time(), resolved on first use
        self._sleep: Sleep = sleep or asyncio.sleep
        self._next_id = 0
        self._closed = False

    def now(self) -> float:
        """The engine clock (seconds)."""
        if self._clock is None:
            self._clock = asyncio.get_running_loop().time
        return self._clock()

    @property
    def caches_prefixes(self) -> bool:
        """Whether `submit` wants the prompt's token ids (a prefix-caching engine)."""
        return False

    def submit(
        self,
        prompt_tokens: int,
        max_tokens: int,
        arrival: float | None = None,
        prompt_ids: Sequence[int] | None = None,
    ) -> SimSequence:
        """Queue a request (from inside the running loop); `arrival` defaults to now.

        Pass the time the request reached the frontend, as vLLM measures TTFT from there;
        `prompt_ids` (when `caches_prefixes`) let cached prompt blocks skip their prefill.
        """
        if prompt_tokens < 1 or max_tokens < 1:
            raise ValueError("prompt_tokens and max_tokens must be >= 1")
        if self._closed:
            raise RuntimeError("engine is closed")
        now = self.now()
        arrival = now if arrival is None else min(arrival, now)
        seq = SimSequence(self._next_id, prompt_tokens, max_tokens, arrival=arrival)
        self._next_id += 1
        if prompt_ids is not None and self.caches_prefixes:
            seq.cache_lookup = True
            seq.block_hashes = self._block_hashes(prompt_ids)
        if self._faults is not None:
            seq.abort_after = self._faults.draw_abort()
        self._observer.on_queued(seq)
        self._enqueue(seq)
        return seq

    def cancel(self, seq: SimSequence) -> None:
        """The client went away: stop the request; a finished one is left alone."""
        if seq.finished_reason is None:
            seq.cancelled = True
            self.abort(seq)

    def abort(self, seq: SimSequence, reason: FinishReason = "abort") -> None:
        """End a live request from the engine's side ("abort", or "error" for a failure)."""
        if seq.finished_reason is None:
            self._finish(seq, reason, self.now())
            self._report_gauges()

    async def aclose(self) -> None:
        """Stop background work; every live request ends with "error" (the engine is gone)."""
        self._closed = True
        await self._stop()
        for seq in list(self._live()):
            self.abort(seq, "error")

    def _stalled(self, start: float, due: float) -> float:
        """`due` pushed back by an injected stall of every stream, if one is configured."""
        return due if self._faults is None else self._faults.stalled(start, due)

    async def _sleep_until(self, due: float) -> None:
        await self._sleep(max(0.0, due - self.now() - self.timer_slack_s))

    def _emit(self, seq: SimSequence, due: float) -> None:
        if seq.abort_after is not None and seq.generated >= seq.abort_after:
            self._finish(seq, "abort", due)  # injected: the engine aborts instead of sampling
            return
        seq.generated += 1
        # The metrics time a token the engine got to late (a busy host) when it was made, as
        # a real server's clock would; the stream and its log keep the schedule.
        made = max(due, self.now())
        if seq.first_token is None:
            seq.first_token = due
            self._observer.on_first_token(seq, made - seq.arrival)
        else:
            assert seq.last_token is not None
            self._observer.on_token(seq, made - seq.last_token)
        seq.last_token = due
        seq.events.put_nowait(TokenEvent(due))
        if seq.generated >= seq.max_tokens:
            self._finish(seq, "length", due)

    def _finish(self, seq: SimSequence, reason: FinishReason, at: float) -> None:
        seq.finished_reason = reason
        seq.finished = at
        self._release(seq)
        seq.events.put_nowait(FinishEvent(reason, at))
        self._observer.on_finished(seq, reason)

    def _block_hashes(self, prompt_ids: Sequence[int]) -> list[int]:
        return []

    @abstractmethod
    def _enqueue(self, seq: SimSequence) -> None: ...

    @abstractmethod
    def _release(self, seq: SimSequence) -> None: ...

    @abstractmethod
    def _live(self) -> Iterable[SimSequence]: ...

    @abstractmethod
    async def _stop(self) -> None: ...

    @abstractmethod
    def _report_gauges(self) -> None: ...


class FixedEngine(SimEngine):
    """No batching: token k (0-based) of every request is due at arrival + ttft + k * itl.

    Each token is a timer callback (`call_at`), not a task woken from a sleep: at hundreds of
    concurrent streams that halves the per-token work, which is what keeps tokens on time.
    With `burst` > 1, tokens come `burst` at a time: token k is due at arrival + ttft +
    (k // burst) * burst * itl, the same rate with one timer (and one write) per burst, so a
    simulator core can feed a client several times the events (benchmarks).
    """

    def __init__(
        self,
        ttft_ms: float,
        itl_ms: float,
        observer: EngineObserver | None = None,
        clock: Clock | None = None,
        call_at: CallAt | None = None,
        faults: FaultPlan | None = None,
        burst: int = 1,
    ) -> None:
        super().__init__(observer, clock, None, faults)
        if burst < 1:
            raise ValueError("burst must be >= 1")
        self._ttft_s = ttft_ms / 1000.0
        self._itl_s = itl_ms / 1000.0
        self._burst = burst
        self._call_at = call_at
        self._timers: dict[SimSequence, TimerHandle] = {}

    def _enqueue(self, seq: SimSequence) -> None:
        seq.admitted = seq.arrival
        self._observer.on_admitted(seq, 0.0)
        self._schedule(seq, 0)
        self._report_gauges()

    def _schedule(self, seq: SimSequence, k: int) -> None:
        due = self._stalled(seq.arrival, seq.arrival + self._ttft_s + k * self._itl_s)
        call_at = self._call_at or asyncio.get_running_loop().call_at
        self._timers[seq] = call_at(due - self.timer_slack_s, self._fire, seq, k, due)

    def _fire(self, seq: SimSequence, k: int, due: float) -> None:
        if seq.finished_reason is not None:
            return
        seq.prefilled = seq.prompt_tokens
        for i in range(self._burst):
            self._observer.on_step(seq.prompt_tokens + 1 if k + i == 0 else 1)
            self._emit(seq, due)
            if seq.finished_reason is not None:
                self._report_gauges()
                return
        self._schedule(seq, k + self._burst)

    def _release(self, seq: SimSequence) -> None:
        timer = self._timers.pop(seq, None)
        if timer is not None:
            timer.cancel()

    def _live(self) -> Iterable[SimSequence]:
        return list(self._timers)

    async def _stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()

    def _report_gauges(self) -> None:
        self._observer.on_gauges(len(self._timers), 0, 0.0)


class BatchingEngine(SimEngine):
    """vLLM-style continuous batching with chunked prefill, one step loop on absolute deadlines.

    Admission is FIFO while fewer than `max_num_seqs` run and the KV cache has room. With
    `kv_allocation: reserve` (TGI, ExLlamaV2) a sequence reserves prompt + max_tokens when
    admitted, so nothing is ever preempted. With `on_demand` (vLLM) it takes KV as it grows;
    when a step's decode tokens do not fit, the most recently admitted sequence is preempted
    (its KV freed, back to the head of the queue) and on resume recomputes its prompt and
    the tokens it had generated, which its stream sees as a pause.

    With `prefix_caching` (vLLM), a sequence admitted with prompt blocks already cached holds
    them instead of computing them (`services/sim/prefix_cache.py`): its prefill, and so its
    first token, is shorter by those tokens' `prefill_ms_per_token`; blocks running sequences
    share count once against the KV cache, and cached blocks nobody holds are evicted (least
    recently used first) when running sequences need their room.
    """

    def __init__(
        self,
        profile: EngineProfile,
        observer: EngineObserver | None = None,
        clock: Clock | None = None,
        sleep: Sleep | None = None,
        faults: FaultPlan | None = None,
    ) -> None:
        super().__init__(observer, clock, sleep, faults)
        self._profile = profile
        self._waiting: deque[SimSequence] = deque()
        self._running: dict[SimSequence, None] = {}  # insertion-ordered set
        self._reserved_tokens = 0  # kv_allocation "reserve" only
        self._cache = PrefixCache(profile.block_size) if profile.prefix_caching else None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def profile(self) -> EngineProfile:
        return self._profile

    @property
    def caches_prefixes(self) -> bool:
        return self._cache is not None

    @property
    def prefix_cache(self) -> PrefixCache | None:
        return self._cache

    def _block_hashes(self, prompt_ids: Sequence[int]) -> list[int]:
        return block_hashes(prompt_ids, self._profile.block_size)

    def _kv_used(self) -> int:
        """KV tokens the running sequences hold, each shared cached block counted once."""
        used = sum(s.kv_tokens for s in self._running)
        return used - (self._cache.shared_tokens if self._cache is not None else 0)

    def _enqueue(self, seq: SimSequence) -> None:
        self._waiting.append(seq)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._step_loop())
        self._wake.set()
        self._report_gauges()

    async def _step_loop(self) -> None:
        start = self.now()
        while True:
            if not self._running and not self._waiting:
                self._wake.clear()
                await self._wake.wait()
                start = self.now()
            end, decoding, chunks = self._schedule(start)
            await self._sleep_until(end)
            self._complete(end, decoding, chunks)
            start = end  # back to back: the next step starts when this one ends

    def _schedule(
        self, start: float
    ) -> tuple[float, list[SimSequence], list[tuple[SimSequence, int]]]:
        p = self._profile
        decoding = [s for s in self._running if s.prefilled >= s.prefill_target]
        free_kv = p.kv_cache_tokens  # reserve: prefill chunks are covered by the reservation
        preempted = False
        if p.kv_allocation == "on_demand":
            free_kv -= self._kv_used() + len(decoding)
            while free_kv < 0 and len(self._running) > 1:  # one always fits (max_model_len)
                victim = next(reversed(self._running))  # the most recently admitted
                free_kv += victim.kv_tokens
                if victim in decoding:
                    decoding.remove(victim)
                    free_kv += 1
                self._preempt(victim)
                preempted = True
        budget = p.max_num_batched_tokens - len(decoding)  # one token per decoding sequence
        chunks: list[tuple[SimSequence, int]] = []
        for seq in self._running:
            n = min(budget, seq.prefill_target - seq.prefilled, max(free_kv, 0))
            if n > 0:  # still prefilling (a decoding sequence has nothing left)
                chunks.append((seq, n))
                budget -= n
                free_kv -= n
        # vLLM admits nobody in a step that had to preempt
        while self._waiting and budget > 0 and len(self._running) < p.max_num_seqs:
            seq = self._waiting[0]
            cached, shared = self._cache_hits(seq)
            if preempted or (self._running and not self._fits(seq, free_kv, shared)):
                break  # FIFO: the head waits for KV space, nobody overtakes it
            self._waiting.popleft()
            self._running[seq] = None
            if p.kv_allocation == "reserve":
                self._reserved_tokens += seq.prompt_tokens + seq.max_tokens
            free_kv -= self._hold_cached(seq, cached, shared)
            if seq.admitted is None:  # a resumed sequence keeps its first admission
                seq.admitted = max(start, seq.arrival)
                seq.cached_tokens = seq.prefilled
                self._observer.on_admitted(seq, seq.admitted - seq.arrival)
            n = min(budget, seq.prefill_target - seq.prefilled)
            chunks.append((seq, n))
            budget -= n
            free_kv -= n
        for seq, n in chunks:
            seq.prefilled += n
            if self._cache is not None:
                self._cache_computed(seq)
        prefill_tokens = sum(n for _, n in chunks)
        step_ms = (
            p.decode_step_base_ms
            + p.decode_step_per_seq_ms * len(decoding)
            + p.prefill_ms_per_token * prefill_tokens
        )
        return self._stalled(start, start + step_ms / 1000.0), decoding, chunks

    def _fits(self, seq: SimSequence, free_kv: int, shared_blocks: int = 0) -> bool:
        if self._profile.kv_allocation == "reserve":
            need = seq.prompt_tokens + seq.max_tokens
            return self._reserved_tokens + need <= self._profile.kv_cache_tokens
        return seq.prefill_target - shared_blocks * self._profile.block_size <= free_kv

    def _cache_hits(self, seq: SimSequence) -> tuple[int, int]:
        """(leading prompt blocks cached, of which held by running sequences) for `seq`."""
        if self._cache is None or not seq.block_hashes:
            return 0, 0
        return self._cache.hits(seq.block_hashes, seq.prefill_target)

    def _hold_cached(self, seq: SimSequence, cached: int, shared: int) -> int:
        """Admit `seq` onto its `cached` leading blocks: it holds them and skips their
        prefill. Returns the KV tokens this takes from the free room (blocks that were cached
        but free; shared ones are already counted)."""
        if self._cache is None or cached == 0:
            return 0
        for block in seq.block_hashes[:cached]:
            self._cache.acquire(block)
        seq.held_blocks = cached
        seq.prefilled = cached * self._cache.block_size
        return (cached - shared) * self._cache.block_size

    def _cache_computed(self, seq: SimSequence) -> None:
        """The prompt blocks `seq` has now computed become cached, held by it."""
        assert self._cache is not None
        full = min(seq.prefilled // self._cache.block_size, len(seq.block_hashes))
        for block in seq.block_hashes[seq.held_blocks : full]:
            self._cache.acquire(block)
        seq.held_blocks = max(seq.held_blocks, full)

    def _drop_blocks(self, seq: SimSequence) -> None:
        if self._cache is not None and seq.held_blocks:
            self._cache.release(seq.block_hashes[: seq.held_blocks])
            seq.held_blocks = 0

    def _evict(self) -> None:
        """Cached blocks nobody holds keep only the room the running sequences leave."""
        if self._cache is not None:
            self._cache.trim(self._profile.kv_cache_tokens - self._kv_used())

    def _preempt(self, seq: SimSequence) -> None:
        """Free a running sequence's KV and put it back at the head of the queue; it will
        recompute its prompt and the tokens it has generated."""
        del self._running[seq]
        self._drop_blocks(seq)
        self._waiting.appendleft(seq)
        seq.prefilled, seq.recompute = 0, seq.generated
        seq.preemptions += 1
        self._observer.on_preempted(seq)

    def _complete(
        self, end: float, decoding: list[SimSequence], chunks: list[tuple[SimSequence, int]]
    ) -> None:
        for seq in decoding:
            if seq.finished_reason is None:
                self._emit(seq, end)
        for seq, _ in chunks:
            if seq.finished_reason is None and seq.prefilled >= seq.prefill_target:
                self._emit(seq, end)  # prefill (or recompute) completed in this step
        self._observer.on_step(len(decoding) + sum(n for _, n in chunks))
        self._evict()
        self._report_gauges()

    def _release(self, seq: SimSequence) -> None:
        if seq in self._running:
            del self._running[seq]
            self._drop_blocks(seq)
            if self._profile.kv_allocation == "reserve":
                self._reserved_tokens -= seq.prompt_tokens + seq.max_tokens
        elif seq in self._waiting:
            self._waiting.remove(seq)

    def _live(self) -> Iterable[SimSequence]:
        return [*self._running, *self._waiting]

    async def _stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _report_gauges(self) -> None:
        kv_usage = min(1.0, max(self._kv_used(), 0) / self._profile.kv_cache_tokens)
        self._observer.on_gauges(len(self._running), len(self._waiting), kv_usage)
