"""Prompts whose leading blocks follow a trace's `hash_ids`, so a prefix cache sees what
production saw.

Each block id stands for one fixed run of `block_size` tokens (seeded by the id alone), so
two requests whose `hash_ids` start alike get byte-identical prompt prefixes of that many
tokens, and differ from the first differing block on. Tokens past the blocks are fresh for
each request. With a local tokenizer the prompt is exactly `input_tokens` tokens (built in
token ids, decoded, and trimmed or padded at its end until it encodes back to that count);
without one, blocks are words at the `PromptSource`'s tokens-per-word, like other prompts.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from loadtest.prompts import PromptSource

__all__ = ["BlockPrompts"]

Unit = int | str  # a token id with a tokenizer, else a word


class BlockPrompts:
    """Makes trace prompts from block ids (see the module docstring)."""

    def __init__(
        self,
        prompts: PromptSource,
        block_size: int = 512,
        seed: int | str = 0,
        cache_blocks: int = 4096,
    ) -> None:
        if block_size < 1:
            raise ValueError(f"block_size must be at least 1, not {block_size}")
        self._prompts = prompts
        self._tokenizer = prompts.tokenizer
        self._block_size = block_size
        self._seed = seed
        self._block = lru_cache(maxsize=cache_blocks)(self._make_block)

    def make(
        self,
        input_tokens: int,
        hash_ids: Sequence[int] = (),
        unique: int | str = 0,
        salt: int | str = "",
    ) -> str:
        """A prompt of `input_tokens` tokens: the blocks of `hash_ids` in order, then tokens
        of its own (seeded by `unique`, e.g. the trace row) where the blocks run out.

        `salt` gives every block id other text (e.g. one salt per replay stage, so a stage
        finds no block a previous stage left in the server's prefix cache); equal ids with
        the same salt are still byte-identical."""
        if input_tokens <= 0:
            return ""
        target = self._units_for(input_tokens)
        units: list[Unit] = []
        for block_id in hash_ids:
            if len(units) >= target:
                break
            units.extend(self._block(block_id, salt))
        del units[target:]
        if len(units) < target:
            units.extend(self._fresh(f"tail:{salt}:{unique}", target - len(units)))
        if self._tokenizer is None:
            return " ".join(str(unit) for unit in units)
        return self._exact(self._tokenizer, units, input_tokens, unique)  # type: ignore[arg-type]

    def _units_for(self, tokens: int) -> int:
        if self._tokenizer is not None:
            return tokens
        return max(1, round(tokens / self._prompts.tokens_per_word))

    def _make_block(self, block_id: int, salt: int | str = "") -> tuple[Unit, ...]:
        key = f"block:{salt}:{block_id}" if salt != "" else f"block:{block_id}"
        return tuple(self._fresh(key, self._units_for(self._block_size)))

    def _fresh(self, key: str, count: int) -> list[Unit]:
        """`count` units drawn from the vocabulary, seeded by `key`."""
        rng = random.Random(f"{self._seed}:{key}")
        vocabulary = self._prompts.vocabulary
        if self._tokenizer is None:
            return list(rng.choices(vocabulary, k=count))
        ids: list[Unit] = []
        while len(ids) < count:
            # A leading space: a run starts at a word boundary, so runs joined end to end
            # encode as the concatenation of their tokens.
            text = " " + " ".join(rng.choices(vocabulary, k=count + 8))
            ids.extend(self._tokenizer.encode(text, add_special_tokens=False).ids)
        return ids[:count]

    def _exact(self, tokenizer: Any, ids: list[int], tokens: int, unique: int | str) -> str:
        """Decode, then trim or pad the end until the text encodes to exactly `tokens`.

        Only the end changes, so leading blocks stay byte-identical across requests."""
        text = tokenizer.decode(ids)
        for attempt in range(8):
            got = len(tokenizer.encode(text, add_special_tokens=False).ids)
            if got == tokens:
                break
            if got > tokens:
                ids = ids[: len(ids) - (got - tokens)]
            else:
                ids = ids + self._fresh(f"pad:{unique}:{attempt}", tokens - got)  # type: ignore[operator]
            text = tokenizer.decode(ids)
        return str(text)
