"""Prompts from hash_ids: equal blocks give byte-identical prefixes, lengths are exact."""

from __future__ import annotations

from pathlib import Path

import pytest
from tokenizers import Tokenizer

from loadtest.prompts import PromptSource
from loadtest.traces import BlockPrompts
from loadtest.workload import VOCABULARY

BLOCK = 16


@pytest.fixture(scope="module", params=["whitespace", "byte-level"])
def tokenizer_path(
    request: pytest.FixtureRequest, tokenizer_json: Path, byte_level_tokenizer_json: Path
) -> Path:
    return tokenizer_json if request.param == "whitespace" else byte_level_tokenizer_json


def _common(a: str, b: str) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


@pytest.mark.parametrize("tokens", [1, 15, 16, 17, 40, 48, 100])
def test_prompt_token_count_equals_input_length(tokenizer_path: Path, tokens: int) -> None:
    source = PromptSource(VOCABULARY, tokenizer_path=tokenizer_path)
    blocks = BlockPrompts(source, block_size=BLOCK, seed=3)
    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    for hash_ids, unique in (([1, 2, 3], "a"), ([], "b"), ([9], "c")):
        prompt = blocks.make(tokens, hash_ids, unique)
        assert len(tokenizer.encode(prompt, add_special_tokens=False).ids) == tokens


def test_equal_leading_blocks_are_byte_identical_then_differ(tokenizer_path: Path) -> None:
    source = PromptSource(VOCABULARY, tokenizer_path=tokenizer_path)
    blocks = BlockPrompts(source, block_size=BLOCK, seed=3)
    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    a = blocks.make(60, [1, 2, 3, 4], unique="a")
    b = blocks.make(60, [1, 2, 7, 8], unique="b")
    shared = blocks.make(2 * BLOCK, [1, 2], unique="c")  # exactly the two shared blocks
    assert a.startswith(shared) and b.startswith(shared)
    assert a[len(shared) + 1 :] != b[len(shared) + 1 :]
    assert len(tokenizer.encode(shared, add_special_tokens=False).ids) == 2 * BLOCK
    assert blocks.make(60, [1, 2, 3, 4], unique="z") == a  # the blocks cover it: no own tail
    assert _common(blocks.make(60, [5, 2, 3, 4], "a"), a) < len(shared) // 2  # first differs


def test_a_new_instance_with_the_same_seed_makes_the_same_blocks(tokenizer_path: Path) -> None:
    source = PromptSource(VOCABULARY, tokenizer_path=tokenizer_path)
    first = BlockPrompts(source, block_size=BLOCK, seed=3).make(50, [4, 5], "x")
    assert BlockPrompts(source, block_size=BLOCK, seed=3).make(50, [4, 5], "x") == first
    assert BlockPrompts(source, block_size=BLOCK, seed=4).make(50, [4, 5], "x") != first


def test_without_a_tokenizer_blocks_are_words() -> None:
    source = PromptSource(VOCABULARY, tokens_per_word=2.0)
    blocks = BlockPrompts(source, block_size=BLOCK)
    a = blocks.make(40, [1, 2, 3]).split()
    b = blocks.make(40, [1, 2, 4], unique=1).split()
    assert len(a) == len(b) == 20  # 40 tokens at 2 tokens per word
    assert a[:16] == b[:16] and a[16:] != b[16:]  # two blocks of 8 words shared
    assert blocks.make(0, [1]) == ""


def test_a_salt_gives_the_same_ids_other_text_still_shared_within_it() -> None:
    """Replay salts blocks by stage: a stage's requests share prefixes with each other, not
    with the stage before (whose blocks a server's prefix cache may still hold)."""
    blocks = BlockPrompts(PromptSource(VOCABULARY), block_size=BLOCK)
    first = blocks.make(64, [1, 2], unique=0, salt="0:0").split()
    again = blocks.make(64, [1, 2, 3], unique=5, salt="0:0").split()
    later = blocks.make(64, [1, 2], unique=0, salt="0:1").split()
    assert first[:32] == again[:32]
    assert _common(" ".join(first), " ".join(later)) < 16
