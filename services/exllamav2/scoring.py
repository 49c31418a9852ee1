"""Prompt log-probs from a model's logits: the arithmetic of a perplexity evaluation.

Separate from the exllamav2 adapter so it runs, and is tested, without a GPU: `forward` may
return a torch tensor (moved to the CPU a slice at a time) or a numpy array.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from services.openai_wire import TokenLogprob, TopLogprob

__all__ = ["score_prompt"]

_ROWS = 256  # positions per slice: 256 x a 128k vocabulary is 128 MiB of float32


def _rows(logits: Any, start: int, end: int) -> np.ndarray:
    part = logits[0, start:end]
    if hasattr(part, "float"):  # a torch tensor: float32 on the CPU
        part = part.float().cpu().numpy()
    return np.asarray(part, dtype=np.float32)


def _best(logprobs: np.ndarray, n: int) -> np.ndarray:
    """The ids of the `n` likeliest candidates of each row, likeliest first."""
    n = min(n, logprobs.shape[-1])
    part = np.argpartition(-logprobs, n - 1, axis=-1)[:, :n]
    order = np.argsort(-np.take_along_axis(logprobs, part, axis=-1), axis=-1, kind="stable")
    return np.take_along_axis(part, order, axis=-1)


def score_prompt(
    forward: Callable[[Sequence[int]], Any],
    input_ids: Sequence[int],
    top_n: int,
    pieces: Sequence[str],
) -> list[TokenLogprob]:
    """Each token's log-prob given the ones before it: log-softmax of the logits at position
    i - 1, taken at token i (the first token has none); its rank (1 + the candidates strictly
    likelier) and the `top_n` best candidates. `pieces[id]` is a token's text."""
    ids = [int(i) for i in input_ids]

    def text(token_id: int) -> str:
        return pieces[token_id] if 0 <= token_id < len(pieces) else ""

    scored = [TokenLogprob(ids[0], text(ids[0]), None)] if ids else []
    if len(ids) < 2:
        return scored
    logits = forward(ids)
    for start in range(0, len(ids) - 1, _ROWS):
        end = min(start + _ROWS, len(ids) - 1)
        rows = _rows(logits, start, end)
        peak = rows.max(axis=-1, keepdims=True)
        total = np.exp(rows - peak).sum(axis=-1, keepdims=True, dtype=np.float64)
        logprobs = rows - (peak + np.log(total)).astype(np.float32)
        targets = np.asarray(ids[start + 1 : end + 1])
        chosen = logprobs[np.arange(len(targets)), targets]
        ranks = (logprobs > chosen[:, None]).sum(axis=-1) + 1
        best = _best(logprobs, top_n) if top_n else None
        for k, token in enumerate(targets.tolist()):
            top: tuple[TopLogprob, ...] = ()
            if best is not None:
                top = tuple(
                    TopLogprob(int(c), text(int(c)), float(logprobs[k, c])) for c in best[k]
                )
            scored.append(TokenLogprob(token, text(token), float(chosen[k]), int(ranks[k]), top))
    return scored
