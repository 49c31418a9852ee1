"""A deterministic stand-in tokenizer and text generator (no model files needed).

One token per regex match of `\\w+|[^\\w\\s]`; generated tokens are words with a leading space.
Ids are a CRC of each piece, so decoding needs the pieces: `pieces()` remembers the ones it
has seen (what `/tokenize` answered), which is all `/detokenize` can give back.
"""

from __future__ import annotations

import random
import re
import zlib
from collections.abc import Iterator, Sequence

__all__ = [
    "CHAT_TEMPLATE_BASE_TOKENS",
    "CHAT_TEMPLATE_PER_MESSAGE_TOKENS",
    "GENERATED_WORDS",
    "VOCAB_SIZE",
    "chat_prompt_tokens",
    "chat_token_ids",
    "count_tokens",
    "decode",
    "last_token_ids",
    "pieces",
    "token_ids",
    "words",
]

_TOKEN_RE = re.compile(r"\w+|[^\w\s]")
VOCAB_SIZE = 128_256  # Llama-3 vocabulary size, only to keep made-up ids plausible
# Chat template overhead, loosely after Llama-3: the assistant header at the end (3 tokens) and,
# per message, a role header and an end-of-turn token (4 tokens).
CHAT_TEMPLATE_BASE_TOKENS = 3
CHAT_TEMPLATE_PER_MESSAGE_TOKENS = 4
_START_HEADER, _END_HEADER, _END_OF_TURN = 128006, 128007, 128009

_VOCAB = (
    "the", "of", "and", "to", "in", "a", "is", "that", "for", "it", "as", "was", "with", "be",
    "by", "on", "not", "this", "are", "or", "from", "at", "which", "but", "have", "an", "they",
    "you", "were", "there", "been", "one", "all", "we", "their", "has", "would", "when", "if",
    "so", "no", "will", "more", "can", "time", "model", "token", "batch", "cache", "quant",
    "serve", "fast", "load", "test", "stream", "kernel", "memory", "latency", "throughput",
)  # fmt: skip


GENERATED_WORDS = _VOCAB
_SEEN: dict[int, str] = {}  # id -> piece, of every piece `pieces()` returned
_TAIL_CHARS = 256


def count_tokens(text: str) -> int:
    """Number of tokens of `text` under the stand-in tokenizer."""
    return sum(1 for _ in _TOKEN_RE.finditer(text))


def chat_prompt_tokens(messages: Sequence[tuple[str, str]]) -> int:
    """Prompt tokens of a chat request with these (role, text) messages, template included."""
    body = sum(count_tokens(text) for _, text in messages)
    return CHAT_TEMPLATE_BASE_TOKENS + CHAT_TEMPLATE_PER_MESSAGE_TOKENS * len(messages) + body


def token_ids(text: str) -> list[int]:
    """Made-up but deterministic token ids (a CRC of each piece)."""
    return [zlib.crc32(m.group().encode()) % VOCAB_SIZE for m in _TOKEN_RE.finditer(text)]


def pieces(text: str) -> list[tuple[int, str]]:
    """(id, piece) of each token of `text`; the pieces are remembered for `decode`."""
    found = [
        (zlib.crc32(m.group().encode()) % VOCAB_SIZE, m.group()) for m in _TOKEN_RE.finditer(text)
    ]
    _SEEN.update(found)
    return found


def decode(ids: Sequence[int]) -> str | None:
    """The pieces of `ids` joined by spaces (the stand-in tokenizer ignores whitespace, so this
    encodes back to `ids`), or None if one was never returned by `pieces()`."""
    try:
        return " ".join(_SEEN[i] for i in ids)
    except KeyError:
        return None


def last_token_ids(text: str, n: int = 2) -> list[int]:
    """The ids of the last `n` tokens of `text`, without tokenizing all of it."""
    tail = _TOKEN_RE.findall(text[-_TAIL_CHARS:])
    if len(tail) <= n and len(text) > _TAIL_CHARS:  # a token longer than the tail: do it all
        tail = _TOKEN_RE.findall(text)
    return [zlib.crc32(piece.encode()) % VOCAB_SIZE for piece in tail[-n:]]


def chat_token_ids(messages: Sequence[tuple[str, str]]) -> list[int]:
    """The templated ids of a chat prompt; `len()` equals `chat_prompt_tokens(messages)`."""
    ids: list[int] = []
    for role, text in messages:
        ids += [_START_HEADER, _role_id(role), _END_HEADER, *token_ids(text), _END_OF_TURN]
    return [*ids, _START_HEADER, _role_id("assistant"), _END_HEADER]


def _role_id(role: str) -> int:
    return zlib.crc32(role.encode()) % VOCAB_SIZE


def words(seed: int) -> Iterator[str]:
    """An endless, seeded stream of generated tokens, each one word with a leading space."""
    rng = random.Random(seed)
    while True:
        yield " " + rng.choice(_VOCAB)
