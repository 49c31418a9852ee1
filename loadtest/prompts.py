"""Where prompts come from: synthetic text of a target token count, or a dataset file.

Token counts are exact when a local `tokenizer.json` is given (Hugging Face `tokenizers`),
calibrated when the target's `/tokenize` told us its tokens per word, and otherwise
approximate (one token per common English word) — `PromptSource.length_source` says which,
and run.json records it. Datasets: JSON lines `{"prompt": ..., "output_tokens": N?}`, or
ShareGPT (`[{"conversations": [{"from": "human", "value": ...}, {"from": "gpt", ...}]}]`).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

__all__ = ["DatasetError", "DatasetItem", "PromptSource", "load_dataset"]

LengthSource = Literal["tokenizer", "calibrated", "approximate"]


class DatasetError(Exception):
    """A dataset or tokenizer file that cannot be used (message names file and line)."""


@dataclass(frozen=True)
class DatasetItem:
    prompt: str
    output_tokens: int | None = None


def _sharegpt(data: Any, path: Path) -> list[DatasetItem]:
    items = []
    for index, entry in enumerate(data):
        turns = entry.get("conversations") if isinstance(entry, dict) else None
        if not isinstance(turns, list) or not turns:
            raise DatasetError(f"{path}: entry {index} has no `conversations` list (ShareGPT)")
        human = next((t.get("value") for t in turns if t.get("from") == "human"), None)
        if not isinstance(human, str) or not human.strip():
            continue  # conversations that open with the model carry no prompt: skipped
        answer = next((t.get("value") for t in turns if t.get("from") == "gpt"), None)
        words = len(answer.split()) if isinstance(answer, str) else None
        items.append(DatasetItem(human, words or None))
    return items


def _jsonl(text: str, path: Path) -> list[DatasetItem]:
    items = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}:{number}: not JSON ({exc.msg})") from exc
        prompt = row.get("prompt") if isinstance(row, dict) else None
        if not isinstance(prompt, str) or not prompt:
            raise DatasetError(f'{path}:{number}: needs a non-empty "prompt" string')
        output = row.get("output_tokens")
        if output is not None and (not isinstance(output, int) or output < 1):
            raise DatasetError(f'{path}:{number}: "output_tokens" must be a positive integer')
        items.append(DatasetItem(prompt, output))
    return items


def load_dataset(path: Path) -> list[DatasetItem]:
    """JSON lines or ShareGPT JSON, told apart by content; one clear error if neither."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read ({exc})") from exc
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            items = _sharegpt(json.loads(stripped), path)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from exc
    else:
        items = _jsonl(text, path)
    if not items:
        raise DatasetError(f"{path}: no usable prompts")
    return items


class PromptSource:
    """Makes the text of a prompt with a given number of tokens (see the module docstring)."""

    def __init__(
        self,
        vocabulary: tuple[str, ...],
        tokenizer_path: Path | None = None,
        tokens_per_word: float | None = None,
        shared_prefix_ratio: float = 0.0,
        seed: int = 0,
    ) -> None:
        self._vocabulary = vocabulary
        self._tokenizer = _load_tokenizer(tokenizer_path) if tokenizer_path else None
        self._tokens_per_word = tokens_per_word or 1.0
        self._prefix_ratio = shared_prefix_ratio
        self._prefix_words = random.Random(f"prefix:{seed}").choices(vocabulary, k=65_536)
        self.length_source: LengthSource = (
            "tokenizer" if self._tokenizer else "calibrated" if tokens_per_word else "approximate"
        )

    @property
    def vocabulary(self) -> tuple[str, ...]:
        return self._vocabulary

    @property
    def tokenizer(self) -> Any | None:
        """The local tokenizer (Hugging Face `tokenizers.Tokenizer`), if one was given."""
        return self._tokenizer

    @property
    def tokens_per_word(self) -> float:
        return self._tokens_per_word

    def count(self, text: str) -> int:
        if self._tokenizer is not None:
            return len(self._tokenizer.encode(text, add_special_tokens=False).ids)
        return round(len(text.split()) * self._tokens_per_word)

    def make(self, tokens: int, rng: random.Random) -> str:
        """A prompt of `tokens` tokens whose first `shared_prefix_ratio` is common to all."""
        prefix_tokens = int(tokens * self._prefix_ratio)
        prefix = self._words(self._prefix_words, prefix_tokens)
        fresh = rng.choices(self._vocabulary, k=max(tokens * 2, 8))
        text = prefix + (" " if prefix else "") + self._words(fresh, tokens - prefix_tokens)
        return self._fit(text.strip(), tokens)

    def _words(self, pool: list[str], tokens: int) -> str:
        if tokens <= 0:
            return ""
        count = max(1, round(tokens / self._tokens_per_word))
        return " ".join(pool[:count])

    def _fit(self, text: str, tokens: int) -> str:
        """With a tokenizer, cut or pad so the prompt encodes to exactly `tokens` tokens."""
        if self._tokenizer is None:
            return text
        encoding = self._tokenizer.encode(text, add_special_tokens=False)
        ids = list(encoding.ids)
        pad = self._tokenizer.encode(" " + self._vocabulary[0], add_special_tokens=False).ids
        while len(ids) < tokens:
            ids.extend(pad)
        for _ in range(8):  # decoding and encoding again may merge tokens: converge
            text = self._tokenizer.decode(ids[:tokens])
            again = self._tokenizer.encode(text, add_special_tokens=False).ids
            if len(again) == tokens:
                return text
            ids = again + pad if len(again) < tokens else again
        return text


def _load_tokenizer(path: Path) -> Any:
    try:
        from tokenizers import Tokenizer

        return Tokenizer.from_file(str(path))
    except Exception as exc:  # the library raises its own Exception type
        raise DatasetError(f"{path}: not a usable tokenizer.json ({exc})") from exc
