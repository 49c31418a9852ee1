"""Tokenizers trained here (nothing can be downloaded), shared by the prompt tests."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from loadtest.workload import VOCABULARY


@pytest.fixture(scope="module")
def tokenizer_json(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small BPE tokenizer trained here (nothing can be downloaded): sub-word merges make
    word and token counts differ, as with a real model's tokenizer."""
    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=120, special_tokens=["[UNK]"])
    rng = random.Random(0)
    text = [" ".join(rng.choices(VOCABULARY, k=50)) for _ in range(200)]
    tokenizer.train_from_iterator(text, trainer)
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    tokenizer.save(str(path))
    return path


@pytest.fixture(scope="module")
def byte_level_tokenizer_json(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """GPT-2 style: tokens carry their leading space (Ġ), decoding concatenates bytes."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    rng = random.Random(1)
    tokenizer.train_from_iterator(
        [" ".join(rng.choices(VOCABULARY, k=50)) for _ in range(200)], trainer
    )
    path = tmp_path_factory.mktemp("tok") / "byte_level_tokenizer.json"
    tokenizer.save(str(path))
    return path
