"""The quality probe of one target: score every window of the text, generate greedily for
every prompt and task. It returns raw per-window and per-prompt data; the statistics (CIs,
deltas, agreement with the reference) are `analysis.quality`'s.

A target is probed on its own (its reference need not be running), so `quantbench run` can
probe each target after its load stages. Each measure either completes or is not measurable
with the reason; a partial measure is never reported as a result.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from loadtest.quality.client import NotMeasurable, TargetClient
from loadtest.quality.config import QualityConfig
from loadtest.quality.text import (
    Task,
    TokenizedText,
    Window,
    default_prompts_path,
    default_text_path,
    digest,
    load_prompts,
    load_tasks,
    plan_windows,
    read_text,
)
from loadtest.quality.tokenizer import TextTokenizer

__all__ = [
    "ProbePlan",
    "TargetMeasurement",
    "WindowScore",
    "build_plan",
    "check_inputs",
    "measure_target",
]

_T = TypeVar("_T")
_R = TypeVar("_R")


@dataclass(frozen=True)
class ProbePlan:
    """Everything every target is asked, fixed before the first one is probed."""

    text_path: Path
    text: TokenizedText
    windows: list[Window]
    window_texts: list[str] | None  # for text-only APIs (TGI); None: unknown
    window_text_problem: str | None
    prompts: list[str]
    tasks: list[Task]
    config: QualityConfig
    tokenizer: TextTokenizer

    def describe(self) -> dict[str, Any]:
        """The text side of quality.json: which text, tokens, window and stride."""
        return {
            "path": str(self.text_path),
            "tokenizer": self.text.tokenizer,
            "tokens": len(self.text.ids),
            "special_prefix_tokens": len(self.text.prefix),
            "window": self.config.window,
            "stride": self.config.stride,
            "windows": len(self.windows),
            "scored_tokens": sum(w.scored for w in self.windows),
            "prompts": len(self.prompts),
            "max_tokens": self.config.max_tokens,
            "tasks": len(self.tasks),
        }

    def to_json(self) -> dict[str, Any]:
        """Everything asked, to be read back by `from_json` (a resumed run asks the same)."""
        text = self.text
        return {
            "text_path": str(self.text_path),
            "text": text.text,
            "ids": text.ids,
            "prefix": text.prefix,
            "offsets": text.offsets,
            "tokenizer": text.tokenizer,
            "windows": [(w.index, w.begin, w.end, w.scored_from) for w in self.windows],
            "window_texts": self.window_texts,
            "window_text_problem": self.window_text_problem,
            "prompts": self.prompts,
            "tasks": [(t.prompt, t.answer, t.match) for t in self.tasks],
        }

    @classmethod
    def from_json(
        cls, data: dict[str, Any], config: QualityConfig, tokenizer: TextTokenizer
    ) -> ProbePlan:
        offsets = data["offsets"]
        text = TokenizedText(
            data["text"],
            list(data["ids"]),
            list(data["prefix"]),
            None if offsets is None else [(int(a), int(b)) for a, b in offsets],
            data["tokenizer"],
        )
        return cls(
            Path(data["text_path"]),
            text,
            [Window(*w) for w in data["windows"]],
            data["window_texts"],
            data["window_text_problem"],
            list(data["prompts"]),
            [Task(*t) for t in data["tasks"]],
            config,
            tokenizer,
        )


def check_inputs(config: QualityConfig) -> None:
    """Read the text, prompt and task files once, before any target starts: a bad file is one
    `QualityInputError` line, not a failure after minutes of bring-up."""
    read_text(config.text or default_text_path())
    load_prompts(config.prompts or default_prompts_path())
    if config.tasks is not None:
        load_tasks(config.tasks)


def build_plan(config: QualityConfig, tokenizer: TextTokenizer) -> ProbePlan:
    """Read the inputs, tokenize the text once and cut it into windows; raises
    `QualityInputError` for an unusable file and `NotMeasurable` if it cannot be tokenized."""
    text_path = config.text or default_text_path()
    tokenized = tokenizer.tokenize(read_text(text_path))
    if config.max_text_tokens is not None and len(tokenized.ids) > config.max_text_tokens:
        keep = config.max_text_tokens
        offsets = tokenized.offsets[:keep] if tokenized.offsets is not None else None
        tokenized = TokenizedText(
            tokenized.text, tokenized.ids[:keep], tokenized.prefix, offsets, tokenized.tokenizer
        )
    windows = plan_windows(len(tokenized.ids), config.window, config.stride)
    texts: list[str] | None = []
    problem = None
    for w in windows:
        piece = tokenized.span_text(w.begin, w.end)
        if piece is None:
            piece = tokenizer.detokenize(tokenized.ids[w.begin : w.end])
        if piece is None:
            texts, problem = (
                None,
                (
                    f"the text's tokenizer ({tokenized.tokenizer}) gives neither offsets nor "
                    "/detokenize, so text-only APIs cannot be sent the windows: set "
                    "quality.tokenizer to a local tokenizer.json"
                ),
            )
            break
        assert texts is not None
        texts.append(piece)
    prompts = load_prompts(config.prompts or default_prompts_path())
    tasks = load_tasks(config.tasks) if config.tasks is not None else []
    return ProbePlan(
        text_path, tokenized, windows, texts, problem, prompts, tasks, config, tokenizer
    )


@dataclass(frozen=True)
class WindowScore:
    """One window on one target: the summed negative log-likelihood of its scored tokens, how
    many were scored, and a digest of the token ids the target scored (`asked`)."""

    index: int
    begin: int
    end: int
    nll: float
    tokens: int
    asked: str


@dataclass
class TargetMeasurement:
    """Raw results of one target; a measure that could not be taken has its reason instead."""

    windows: list[WindowScore] | None = None
    perplexity_error: str | None = None
    outputs: list[str] | None = None
    output_ids: list[list[int]] | None = None
    agreement_error: str | None = None
    divergence_error: str | None = None
    task_outputs: list[str] | None = None
    task_correct: list[bool] | None = None
    tasks_error: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "windows": None if self.windows is None else [vars(w) for w in self.windows],
            "perplexity_error": self.perplexity_error,
            "outputs": self.outputs,
            "output_ids": self.output_ids,
            "agreement_error": self.agreement_error,
            "divergence_error": self.divergence_error,
            "task_outputs": self.task_outputs,
            "task_correct": self.task_correct,
            "tasks_error": self.tasks_error,
            "seconds": self.seconds,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TargetMeasurement:
        """The inverse of `to_json` (a probe saved in a run directory, read back)."""
        windows = data.get("windows")
        return cls(
            windows=None if windows is None else [WindowScore(**w) for w in windows],
            perplexity_error=data.get("perplexity_error"),
            outputs=data.get("outputs"),
            output_ids=data.get("output_ids"),
            agreement_error=data.get("agreement_error"),
            divergence_error=data.get("divergence_error"),
            task_outputs=data.get("task_outputs"),
            task_correct=data.get("task_correct"),
            tasks_error=data.get("tasks_error"),
            seconds=dict(data.get("seconds") or {}),
        )


def _in_parallel(fn: Callable[[_T], _R], items: Sequence[_T], workers: int) -> list[_R]:
    """`fn` over `items` with `workers` requests in flight; results in order; the first
    exception (in order) propagates."""
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(items) or 1))) as pool:
        return list(pool.map(fn, items))


def _score_window(client: TargetClient, plan: ProbePlan, w: Window) -> WindowScore:
    text = plan.text
    ids = text.ids[w.begin : w.end]
    piece = None
    if client.needs_text:
        if plan.window_texts is None:
            raise NotMeasurable(f"prompt log-probs: {plan.window_text_problem}")
        piece = plan.window_texts[w.index]
    scored = client.score(text.prefix, ids, piece)
    if len(scored) < w.scored:
        raise NotMeasurable(
            f"window {w.index}: {len(scored)} tokens came back, {w.scored} were to be scored"
        )
    tail = scored[len(scored) - w.scored :]
    returned = [token_id for token_id, _ in scored]
    if all(i is not None for i in returned):
        if [i for i, _ in tail] != text.ids[w.scored_from : w.end]:
            raise NotMeasurable(
                f"window {w.index}: the target tokenizes the text differently from "
                f"{text.tokenizer}; perplexity is compared over identical tokens only"
            )
        asked = digest([i for i in returned if i is not None])
    else:
        asked = digest([*text.prefix, *ids])
    values = [lp for _, lp in tail if lp is not None]
    first_of_text = 1 if w.scored_from == 0 and not text.prefix else 0  # nothing before it
    if w.scored - len(values) > first_of_text:
        raise NotMeasurable(f"window {w.index}: scored tokens came back without a log-prob")
    return WindowScore(w.index, w.begin, w.end, -sum(values), len(values), asked)


def measure_target(
    client: TargetClient, plan: ProbePlan, say: Callable[[str], None] | None = None
) -> TargetMeasurement:
    """Probe one target: perplexity windows, agreement prompts, tasks (each may fail alone)."""
    say = say or (lambda _: None)
    out = TargetMeasurement()
    workers = plan.config.concurrency
    name = client.endpoint.name
    started = time.perf_counter()
    say(f"  {name}: scoring {len(plan.windows)} windows of {plan.config.window} tokens")
    try:
        out.windows = _in_parallel(lambda w: _score_window(client, plan, w), plan.windows, workers)
    except NotMeasurable as exc:
        out.perplexity_error = str(exc)
    out.seconds["perplexity"] = round(time.perf_counter() - started, 3)

    started = time.perf_counter()
    say(f"  {name}: {len(plan.prompts)} greedy generations of {plan.config.max_tokens} tokens")
    max_tokens = plan.config.max_tokens
    try:
        out.outputs = _in_parallel(lambda p: client.generate(p, max_tokens), plan.prompts, workers)
    except NotMeasurable as exc:
        out.agreement_error = str(exc)
    if out.outputs is not None:
        try:
            tokenize = plan.tokenizer.tokenize
            out.output_ids = _in_parallel(lambda o: tokenize(o).ids, out.outputs, workers)
        except NotMeasurable as exc:
            out.divergence_error = f"outputs could not be tokenized: {exc}"
    out.seconds["agreement"] = round(time.perf_counter() - started, 3)

    if plan.tasks:
        started = time.perf_counter()
        try:
            prompts = [task.prompt for task in plan.tasks]
            out.task_outputs = _in_parallel(
                lambda p: client.generate(p, max_tokens), prompts, workers
            )
            out.task_correct = [
                t.correct(o) for t, o in zip(plan.tasks, out.task_outputs, strict=True)
            ]
        except NotMeasurable as exc:
            out.tasks_error = str(exc)
        out.seconds["tasks"] = round(time.perf_counter() - started, 3)
    return out
