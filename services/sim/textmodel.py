"""The simulator's stand-in language model: reproducible prompt log-probs and greedy text whose
distance from FP16 follows the quantization's `quality:` profile. Everything here is *simulated*.

FP16 is the reference: the log-prob of a token depends only on the two tokens before it and its
position in the request (a hash, so the same text scores the same on every simulator). Its
negative log-likelihood is exponentially distributed around ln 5.47 (Llama-2-7B's WikiText-2
perplexity at FP16, AWQ paper Table 4), a little higher early in a context, as with real models,
so a sliding window with a stride scores lower than disjoint windows. A quantized profile adds
to every token a seeded, non-negative penalty whose mean is ln(ppl_factor): on any long text its
perplexity is FP16's times `ppl_factor`. Its greedy choice leaves FP16's with probability
`disagreement_rate` per token; the contexts then differ, so the rest of the output does too.
"""

from __future__ import annotations

import functools
import math
import zlib
from collections.abc import Iterator, Sequence

from services.openai_wire import TokenLogprob, TopLogprob
from services.sim.config import QualityProfile, SimSettings
from services.sim.profiles import load_quality
from services.sim.tokens import GENERATED_WORDS, token_ids

__all__ = ["MEAN_NLL", "TextModel", "text_model_for"]

MEAN_NLL = math.log(5.47)  # FP16 reference level (AWQ paper, Llama-2-7B, WikiText-2)
_MASK = (1 << 64) - 1
_NONE = (1 << 32) + 1  # the "token" before the first one
_REFERENCE, _PENALTY, _GREEDY, _FLIP, _OTHER, _TOP = 1, 2, 3, 4, 5, 6
_WORD_IDS = tuple(token_ids(word)[0] for word in GENERATED_WORDS)
_ALTERNATIVE_GAP = 0.9  # log-prob between consecutive top candidates after the first
_PREFIXES_KEPT = 1 << 16  # contexts whose hash prefixes a model keeps (~10 MB at most)


def _mix(*values: int) -> int:
    """A 64-bit hash of the values (splitmix64 steps), stable across processes and runs."""
    x = 0
    for value in values:
        x = _step(x, value)
    return x


def _step(x: int, value: int) -> int:
    """One splitmix64 step of `_mix`: `_mix(*a, b) == _step(_mix(*a), b)`."""
    x = (x + (value & _MASK) + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


@functools.lru_cache(maxsize=1 << 16)
def _mixed(*values: int) -> int:
    """`_mix` of a prefix that repeats (a kind and the two tokens before), kept: generating
    a token then mixes in only its position (the streaming hot path)."""
    return _mix(*values)


def _unit(h: int) -> float:
    """A hash as a number in (0, 1)."""
    return ((h >> 11) + 0.5) / 9007199254740992.0


class TextModel:
    """The FP16 reference model, degraded by a `QualityProfile`; `salt` seeds the degradation."""

    def __init__(self, quality: QualityProfile, salt: int = 0) -> None:
        self.quality = quality
        self._penalty = math.log(quality.ppl_factor)
        self._rate = quality.disagreement_rate
        self._salt = salt
        self._prefixes: dict[tuple[int, int], tuple[int, int]] = {}

    # -- scoring ----------------------------------------------------------------------------

    def nll(self, prev2: int, prev1: int, token: int, position: int) -> float:
        """Negative log-likelihood of `token` at `position` after `prev2 prev1`."""
        context = 1.0 + 8.0 / (16.0 + position)
        value = -math.log(_unit(_mix(_REFERENCE, prev2, prev1, token))) * MEAN_NLL * context
        if self._penalty:
            value += 2.0 * self._penalty * _unit(_mix(self._salt, _PENALTY, prev2, prev1, token))
        return value

    def score(
        self, ids: Sequence[int], texts: Sequence[str] | None = None, top_n: int = 0
    ) -> list[TokenLogprob]:
        """Every token of a prompt scored given the ones before it (the first has no log-prob);
        `texts`: the tokens' text (default: `<id>`); `top_n` candidates per position."""
        scored: list[TokenLogprob] = []
        for i, token in enumerate(ids):
            text = texts[i] if texts is not None else f"<{token}>"
            if i == 0:
                scored.append(TokenLogprob(token, text, None, None, ()))
                continue
            prev2, prev1 = (ids[i - 2] if i >= 2 else _NONE), ids[i - 1]
            top = self._top(prev2, prev1, i, max(top_n, 1))
            if token == top[0].token_id:
                logprob = top[0].logprob  # the model's own first choice
            else:
                logprob = -self.nll(prev2, prev1, token, i)
                top = tuple(c for c in top if c.token_id != token)
            if logprob > top[0].logprob:  # likelier than every listed candidate: the first
                top = (TopLogprob(token, text, logprob), *top)
            better = sum(1 for c in top if c.logprob > logprob)
            listed = any(c.token_id == token for c in top[:top_n])
            rank = better + 1 if listed or better < len(top) else better + 1 + int(-logprob * 10)
            scored.append(TokenLogprob(token, text, logprob, rank, top[:top_n]))
        return scored

    def _top(self, prev2: int, prev1: int, position: int, n: int) -> tuple[TopLogprob, ...]:
        first = self._choice(prev2, prev1, position)
        best = -(0.05 + 1.2 * _unit(_mix(_TOP, prev2, prev1, position)))
        words = len(GENERATED_WORDS)
        picks = [(first + k) % words for k in range(min(n, words))]
        return tuple(
            TopLogprob(_WORD_IDS[w], " " + GENERATED_WORDS[w], best - _ALTERNATIVE_GAP * k)
            for k, w in enumerate(picks)
        )

    # -- greedy generation ------------------------------------------------------------------

    def _choice(self, prev2: int, prev1: int, position: int) -> int:
        words = len(GENERATED_WORDS)
        prefixes = self._prefixes.get((prev2, prev1))
        if prefixes is None:  # the (kind, prev2, prev1) part of both hashes, kept
            if len(self._prefixes) >= _PREFIXES_KEPT:  # prompts' tails add pairs without end
                self._prefixes.clear()
            prefixes = self._prefixes[prev2, prev1] = (
                _mixed(_GREEDY, prev2, prev1),
                _mixed(self._salt, _FLIP, prev2, prev1),
            )
        choice = _step(prefixes[0], position) % words
        if self._rate:
            flip = _step(prefixes[1], position)
            if _unit(flip) < self._rate:
                other = 1 + _mix(self._salt, _OTHER, prev2, prev1, position) % (words - 1)
                return (choice + other) % words
        return choice

    def greedy(self, last_ids: Sequence[int], length: int) -> Iterator[str]:
        """The greedy continuation of a prompt of `length` tokens ending in `last_ids`, one
        token (a word with a leading space) at a time, forever."""
        tail = [_NONE, _NONE, *last_ids][-2:]
        prev2, prev1 = tail[0], tail[1]
        position = max(length, 1)
        while True:
            w = self._choice(prev2, prev1, position)
            yield " " + GENERATED_WORDS[w]
            prev2, prev1, position = prev1, _WORD_IDS[w], position + 1


def text_model_for(settings: SimSettings) -> TextModel:
    """The model a simulator serves: its profile's quality block, with the settings' overrides,
    its degradation seeded by the quant label and the settings' seed."""
    quality = load_quality(settings.stack, settings.quant)
    update = {
        key: value
        for key, value in (
            ("ppl_factor", settings.ppl_factor),
            ("disagreement_rate", settings.disagreement_rate),
        )
        if value is not None
    }
    if update:
        quality = quality.model_copy(update={**update, "source": "set in the simulator settings"})
    return TextModel(quality, zlib.crc32(f"{settings.quant}:{settings.seed}".encode()))
