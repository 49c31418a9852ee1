"""The simulator's prefix cache: vLLM's block rules, hits that skip prefill on a scripted
clock, eviction under KV pressure, and vLLM's prefix-cache counters."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from services.sim import BatchingEngine, EngineProfile, SimSequence, VllmMetrics, load_profile
from services.sim.prefix_cache import PrefixCache, block_hashes

BS = 16


def _profile(**overrides: Any) -> EngineProfile:
    fields: dict[str, Any] = {
        "max_num_seqs": 64,
        "max_num_batched_tokens": 4096,
        "kv_cache_tokens": 100_000,
        "decode_step_base_ms": 10.0,
        "decode_step_per_seq_ms": 0.0,
        "prefill_ms_per_token": 0.1,
        "kv_allocation": "on_demand",
        "prefix_caching": True,
        "block_size": BS,
    }
    return EngineProfile(**(fields | overrides))


def _ids(start: int, count: int) -> list[int]:
    return list(range(start, start + count))


def test_block_hashes_chain_so_equal_hashes_mean_equal_prefixes() -> None:
    a = block_hashes(_ids(0, 40), BS)
    b = block_hashes(_ids(0, 32) + _ids(500, 8), BS)
    c = block_hashes(_ids(1000, 16) + _ids(16, 16), BS)  # block 2 as a's, after another block 1
    assert len(a) == 2 and a == b  # only full blocks; the partial third is not hashed
    assert c[1] != a[1], "a block's hash must include everything before it"


def test_hits_stop_at_the_first_miss_and_leave_the_last_token_to_compute() -> None:
    cache = PrefixCache(BS)
    hashes = block_hashes(_ids(0, 64), BS)
    for block in hashes[:3]:
        cache.acquire(block)
    assert cache.hits(hashes, 64) == (3, 3)
    cache.release(hashes[:3])
    assert cache.hits(hashes, 64) == (3, 0)  # still cached, held by nobody
    for block in hashes:
        cache.acquire(block)
    # 64 tokens all cached: at most 63 can be reused, so 3 whole blocks (vLLM recomputes one)
    assert cache.hits(hashes, 64) == (3, 3)
    other = block_hashes(_ids(0, 16) + _ids(900, 48), BS)
    assert cache.hits(other, 64) == (1, 1)


def test_free_blocks_are_evicted_oldest_first_and_a_requests_tail_before_its_head() -> None:
    cache = PrefixCache(BS)
    first, second = block_hashes(_ids(0, 48), BS), block_hashes(_ids(100, 48), BS)
    for hashes in (first, second):
        for block in hashes:
            cache.acquire(block)
    cache.release(first)
    cache.release(second)
    assert cache.free_blocks == 6 and cache.held_blocks() == 0
    assert cache.trim(4 * BS) == 2  # room for four: the oldest two go, first's tail first
    assert cache.hits(first, 100) == (1, 0), "first's head block outlives its tail"
    assert cache.trim(0) == 4 and cache.hits(second, 100) == (0, 0)


def test_shared_blocks_count_once() -> None:
    cache = PrefixCache(BS)
    hashes = block_hashes(_ids(0, 32), BS)
    for _ in range(3):
        for block in hashes:
            cache.acquire(block)
    assert cache.shared_tokens == 2 * 2 * BS  # two blocks, held twice more than once
    cache.release(hashes)
    assert cache.shared_tokens == 2 * BS


def _run(profile: EngineProfile, clock: Any, plan: list[tuple[float, list[int], int]]) -> Any:
    """Submit each (at engine time, prompt ids, max tokens) in order, waiting for the previous
    one to finish first when `at` is None; returns the sequences and the metrics registry."""
    registry = CollectorRegistry()
    metrics = VllmMetrics(registry, "m")

    async def main() -> list[SimSequence]:
        engine = BatchingEngine(profile, metrics, clock=clock, sleep=clock.sleep)
        done = []
        for _, ids, max_tokens in plan:
            seq = engine.submit(len(ids), max_tokens, prompt_ids=ids)
            async for _ in seq:
                pass
            done.append(seq)
        await engine.aclose()
        return done

    return asyncio.run(main()), registry


def test_a_cache_hit_skips_its_prefill_and_is_counted_as_vllm_counts_it(fake_clock: Any) -> None:
    profile = _profile()
    shared = _ids(0, 512)
    plan = [
        (0, shared + _ids(10_000, 100), 4),  # computes and caches 32 blocks of the prefix
        (0, shared + _ids(20_000, 100), 4),  # reuses them: 36 blocks cached of 38
        (0, _ids(30_000, 612), 4),  # shares nothing
    ]
    seqs, registry = _run(profile, fake_clock, plan)
    ttft = [s.first_token - s.arrival for s in seqs]  # the simulator's own clock
    assert [s.cached_tokens for s in seqs] == [0, 512, 0]
    saved = 512 * profile.prefill_ms_per_token / 1000
    assert abs((ttft[0] - ttft[1]) - saved) < 1e-9, "the hit saves exactly its prefill time"
    assert abs(ttft[2] - ttft[0]) < 1e-9, "a prompt of the same length without hits takes as long"
    labels = {"model_name": "m", "engine": "0"}
    queries = registry.get_sample_value("vllm:prefix_cache_queries_total", labels)
    hits = registry.get_sample_value("vllm:prefix_cache_hits_total", labels)
    assert queries == 3 * 612 and hits == 512


def test_kv_pressure_evicts_cached_blocks_so_a_later_request_misses(fake_clock: Any) -> None:
    # Room for 1,200 KV tokens: the second request (1,190 tokens) needs the room the first
    # one's cached blocks hold once it finishes, so they are evicted and the third misses.
    profile = _profile(kv_cache_tokens=1_200, max_num_batched_tokens=2048)
    first = _ids(0, 600)
    plan = [(0, first, 4), (0, _ids(50_000, 1_190), 4), (0, first, 4)]
    seqs, _ = _run(profile, fake_clock, plan)
    assert [s.cached_tokens for s in seqs] == [0, 0, 0]
    roomy, _ = _run(_profile(), fake_clock, plan)
    assert [s.cached_tokens for s in roomy] == [0, 0, 592], "without pressure it hits (37 blocks)"


@pytest.mark.parametrize("quant", ["awq", "gptq", "fp16"])
def test_vllm_profiles_cache_prefixes_in_blocks_of_16_and_the_others_do_not(quant: str) -> None:
    vllm = load_profile("vllm", quant, "h100")
    assert vllm.prefix_caching and vllm.block_size == 16
    assert not load_profile("tgi", quant, "h100").prefix_caching
    exl2 = "exl2" if quant == "awq" else quant
    assert not load_profile("exllamav2", exl2, "h100").prefix_caching
