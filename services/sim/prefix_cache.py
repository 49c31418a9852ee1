"""The simulated engine's prefix cache: vLLM's automatic prefix caching, by block.

As in vLLM V1 (docs/design/prefix_caching.md; `vllm/v1/core/kv_cache_manager.py`,
`single_type_kv_cache_manager.py`, `block_pool.py`):
- a prompt is cut into blocks of `block_size` tokens (16 by default: `CacheConfig.
  DEFAULT_BLOCK_SIZE` in `vllm/config/cache.py`); only full blocks are cached, each under a
  hash of its tokens chained with its parent's, so a hash stands for the whole prefix;
- a request reuses its longest run of leading cached blocks, at most `num_tokens - 1` tokens
  (the last token is always computed to get logits: `get_computed_blocks`);
- blocks a running request holds are shared (reference counted); a block nobody holds stays
  cached but free, and free blocks are evicted least recently used first when new KV needs
  the room. A finished request frees its blocks tail first (`free`: "reverse order so that
  the tail blocks are evicted first"), so a shared head outlives its tails.

The engine keeps token accounting: `shared_tokens` is what running sequences hold twice
(counted once here), and `trim(room)` evicts free blocks until those left fit in `room`.
Hashes are Python's hash of int tuples, stable across processes (no string hashing).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

__all__ = ["PrefixCache", "block_hashes"]


def block_hashes(token_ids: Sequence[int], block_size: int) -> list[int]:
    """The chained hash of each full block of `token_ids`."""
    hashes: list[int] = []
    parent = 0
    for end in range(block_size, len(token_ids) + 1, block_size):
        parent = hash((parent, tuple(token_ids[end - block_size : end])))
        hashes.append(parent)
    return hashes


class PrefixCache:
    """Cached blocks by hash: reference counts of held ones, an LRU of free ones."""

    def __init__(self, block_size: int) -> None:
        if block_size < 1:
            raise ValueError(f"block_size must be at least 1, not {block_size}")
        self.block_size = block_size
        self._refs: dict[int, int] = {}  # held blocks: hash -> how many sequences hold it
        self._free: OrderedDict[int, None] = OrderedDict()  # cached, unheld; oldest first
        self._extra_refs = 0  # sum of (refs - 1) over held blocks: the tokens held twice / bs

    @property
    def shared_tokens(self) -> int:
        """Tokens that running sequences hold more than once (each block counts once)."""
        return self._extra_refs * self.block_size

    @property
    def free_blocks(self) -> int:
        return len(self._free)

    def held_blocks(self) -> int:
        return len(self._refs)

    def hits(self, hashes: Sequence[int], num_tokens: int) -> tuple[int, int]:
        """(leading blocks cached, of which held by a running sequence) for a request of
        `num_tokens` tokens whose full prompt blocks hash to `hashes`."""
        limit = min(len(hashes), max(num_tokens - 1, 0) // self.block_size)
        found = held = 0
        for block in hashes[:limit]:
            if block in self._refs:
                held += 1
            elif block not in self._free:
                break
            found += 1
        return found, held

    def acquire(self, block: int) -> None:
        """A sequence holds `block` (cached or just computed)."""
        refs = self._refs.get(block)
        if refs is None:
            self._free.pop(block, None)
            self._refs[block] = 1
        else:
            self._refs[block] = refs + 1
            self._extra_refs += 1

    def release(self, blocks: Sequence[int]) -> None:
        """A sequence lets go of `blocks` (its leading ones, in order): tail first, so a
        shared head is evicted last."""
        for block in reversed(blocks):
            refs = self._refs[block]
            if refs > 1:
                self._refs[block] = refs - 1
                self._extra_refs -= 1
            else:
                del self._refs[block]
                self._free[block] = None

    def trim(self, room_tokens: int) -> int:
        """Evict least recently freed blocks until the free ones fit in `room_tokens`;
        returns how many were evicted."""
        keep = max(room_tokens, 0) // self.block_size
        evicted = 0
        while len(self._free) > keep:
            self._free.popitem(last=False)
            evicted += 1
        return evicted
