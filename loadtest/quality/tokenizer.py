"""The one tokenizer the probe cuts the text with: a local tokenizer.json (Hugging Face
`tokenizers`, offsets included) or a target's own tokenize route (see client.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from loadtest.quality.client import NotMeasurable
from loadtest.quality.text import QualityInputError, TokenizedText

__all__ = ["LocalTokenizer", "TextTokenizer"]


class TextTokenizer(Protocol):
    def tokenize(self, text: str) -> TokenizedText: ...

    def detokenize(self, ids: list[int]) -> str | None: ...


class LocalTokenizer:
    """A tokenizer.json on disk: ids, character offsets and the special prefix (BOS), found by
    encoding the text with and without special tokens."""

    def __init__(self, path: Path) -> None:
        try:
            from tokenizers import Tokenizer

            self._tokenizer: Any = Tokenizer.from_file(str(path))
        except Exception as exc:  # the library raises its own Exception type for bad files
            raise QualityInputError(f"{path}: not a usable tokenizer.json ({exc})") from exc
        self._path = path

    def tokenize(self, text: str) -> TokenizedText:
        bare = self._tokenizer.encode(text, add_special_tokens=False)
        full = self._tokenizer.encode(text, add_special_tokens=True).ids
        ids = list(bare.ids)
        prefix: list[int] = []
        for k in range(len(full) - len(ids) + 1):
            if full[k : k + len(ids)] == ids:
                prefix = list(full[:k])
                break
        else:
            raise NotMeasurable(f"{self._path}: ids with and without special tokens differ")
        offsets = [(int(a), int(b)) for a, b in bare.offsets]
        return TokenizedText(text, ids, prefix, offsets, str(self._path))

    def detokenize(self, ids: list[int]) -> str | None:
        return str(self._tokenizer.decode(ids))
