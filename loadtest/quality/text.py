"""The probe's inputs: the tokenized text and its windows, agreement prompts and tasks.

The text is tokenized once, with one tokenizer (the reference's), and every target is asked to
score the same windows of the same token ids. Each window starts with the tokenizer's special
prefix (BOS), as TGI's text API always adds it and as lm-evaluation-harness's rolling windows
do, so every scored token has the same context on every target.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

__all__ = [
    "QualityInputError",
    "Task",
    "TokenizedText",
    "Window",
    "default_prompts_path",
    "default_text_path",
    "digest",
    "load_prompts",
    "load_tasks",
    "plan_windows",
]


class QualityInputError(Exception):
    """A text, prompt or task file that cannot be used (the message names file and line)."""


@dataclass(frozen=True)
class TokenizedText:
    """`ids`: the text's tokens (no special tokens); `prefix`: what the tokenizer puts before
    any text (BOS); `offsets`: each token's (start, end) characters in `text`, if known."""

    text: str
    ids: list[int]
    prefix: list[int]
    offsets: list[tuple[int, int]] | None
    tokenizer: str  # where the tokens came from, for the report

    def span_text(self, begin: int, end: int) -> str | None:
        """The text of tokens `begin:end`, from the offsets (None without offsets)."""
        if self.offsets is None:
            return None
        return self.text[self.offsets[begin][0] : self.offsets[end - 1][1]]


@dataclass(frozen=True)
class Window:
    """Tokens `begin:end` of the text are sent; `scored_from:end` are scored (the first window
    scores all of its tokens, each later one only those the previous window did not reach)."""

    index: int
    begin: int
    end: int
    scored_from: int

    @property
    def scored(self) -> int:
        return self.end - self.scored_from


def plan_windows(n_tokens: int, window: int, stride: int) -> list[Window]:
    """The Hugging Face perplexity guide's sliding window over `n_tokens` tokens."""
    windows: list[Window] = []
    previous_end = 0
    for begin in range(0, n_tokens, stride):
        end = min(begin + window, n_tokens)
        windows.append(Window(len(windows), begin, end, previous_end))
        previous_end = end
        if end == n_tokens:
            break
    return windows


def digest(ids: list[int]) -> str:
    """A short fingerprint of a token id sequence (what a target was asked to score)."""
    return hashlib.sha256(json.dumps(ids).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Task:
    """A prompt with an expected answer: `contains` (default) or `exact` match, both compared
    case-insensitively on whitespace-normalised text."""

    prompt: str
    answer: str
    match: str = "contains"

    def correct(self, output: str) -> bool:
        got, want = _normal(output), _normal(self.answer)
        return got == want if self.match == "exact" else want in got


def _normal(text: str) -> str:
    return " ".join(text.casefold().split())


def _data(name: str) -> Path:
    return Path(str(resources.files("loadtest.quality") / "data" / name))


def default_text_path() -> Path:
    return _data("sample.txt")


def default_prompts_path() -> Path:
    return _data("prompts.txt")


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise QualityInputError(f"{path}: cannot read as UTF-8 text ({exc})") from exc


def read_text(path: Path) -> str:
    text = _read(path)
    if not text.strip():
        raise QualityInputError(f"{path}: the perplexity text is empty")
    return text


def load_prompts(path: Path) -> list[str]:
    """One prompt per non-empty line (`\\n` inside a line stands for a newline)."""
    prompts = [line.replace("\\n", "\n") for line in _read(path).splitlines() if line.strip()]
    if not prompts:
        raise QualityInputError(f"{path}: no prompts (one per line)")
    return prompts


def load_tasks(path: Path) -> list[Task]:
    tasks = []
    for number, line in enumerate(_read(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            match = row.get("match", "contains")
            if match not in ("contains", "exact"):
                raise ValueError(f"match must be contains or exact, not {match!r}")
            tasks.append(Task(str(row["prompt"]), str(row["answer"]), match))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise QualityInputError(
                f'{path}:{number}: expected {{"prompt": ..., "answer": ..., '
                f'"match": "contains"|"exact"}} ({exc})'
            ) from exc
    if not tasks:
        raise QualityInputError(f"{path}: no tasks")
    return tasks
