"""Statistics of the quality probe, pure: perplexity with a bootstrap CI over windows, the
paired change against the reference, greedy agreement and task accuracy, the accuracy bar.

Perplexity is exp(total NLL / scored tokens) over the windows (token-weighted, as the
literature computes it); its 95% CI resamples whole windows (scipy.stats.bootstrap), so
neighbouring tokens' correlation is kept. The change against the reference resamples the same
windows for both (paired), so a 1% difference is called only when its CI excludes 0.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import stats

__all__ = [
    "MIN_WINDOWS_FOR_CI",
    "AccuracyEstimate",
    "AgreementEstimate",
    "DeltaEstimate",
    "PerplexityEstimate",
    "Verdict",
    "accuracy",
    "agreement",
    "bar_verdict",
    "first_divergence",
    "perplexity",
    "perplexity_delta",
]

MIN_WINDOWS_FOR_CI = 5  # fewer windows: no interval (a bootstrap of 2-4 values means little)
_RESAMPLES = 2000
_CONFIDENCE = 0.95
Verdict = Literal["meets", "misses", "uncertain", "reference", "not measurable"]


@dataclass(frozen=True)
class PerplexityEstimate:
    value: float
    ci_low: float | None
    ci_high: float | None
    tokens: int
    windows: int


@dataclass(frozen=True)
class DeltaEstimate:
    """Relative perplexity change against the reference (0.02 = +2%), with its paired CI;
    `significant`: the CI excludes 0."""

    value: float
    ci_low: float | None
    ci_high: float | None

    @property
    def significant(self) -> bool:
        return (
            self.ci_low is not None
            and self.ci_high is not None
            and (self.ci_low > 0 or self.ci_high < 0)
        )


@dataclass(frozen=True)
class AgreementEstimate:
    """Greedy outputs against the reference's on the same prompts: the exact-match rate (with a
    Wilson 95% CI), and the first divergence (token index) of each prompt that differs."""

    prompts: int
    exact_match_rate: float
    ci_low: float
    ci_high: float
    first_divergence: list[int | None] | None  # per prompt; None: identical
    first_divergence_median: float | None


@dataclass(frozen=True)
class AccuracyEstimate:
    tasks: int
    correct: int
    rate: float
    ci_low: float
    ci_high: float


def _bootstrap(data: tuple[np.ndarray, ...], statistic: Any, seed: int) -> tuple[float, float]:
    result = stats.bootstrap(
        data,
        statistic,
        paired=True,
        vectorized=True,
        n_resamples=_RESAMPLES,
        confidence_level=_CONFIDENCE,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def perplexity(nll: Sequence[float], tokens: Sequence[int], seed: int = 0) -> PerplexityEstimate:
    """exp(sum NLL / sum tokens) over windows, with a bootstrap CI over windows."""
    nll_a, tok_a = np.asarray(nll, dtype=float), np.asarray(tokens, dtype=float)
    if len(nll_a) == 0 or tok_a.sum() <= 0:
        raise ValueError("no scored tokens")
    value = math.exp(nll_a.sum() / tok_a.sum())
    low = high = None
    if len(nll_a) >= MIN_WINDOWS_FOR_CI:

        def ppl(n: np.ndarray, t: np.ndarray, axis: int = -1) -> np.ndarray:
            return np.exp(n.sum(axis=axis) / t.sum(axis=axis))

        low, high = _bootstrap((nll_a, tok_a), ppl, seed)
    return PerplexityEstimate(value, low, high, int(tok_a.sum()), len(nll_a))


def perplexity_delta(
    nll: Sequence[float], reference_nll: Sequence[float], tokens: Sequence[int], seed: int = 0
) -> DeltaEstimate:
    """ppl / reference ppl - 1 over the same windows (same tokens), paired bootstrap CI."""
    a, b = np.asarray(nll, dtype=float), np.asarray(reference_nll, dtype=float)
    t = np.asarray(tokens, dtype=float)
    if not len(a) == len(b) == len(t) or len(a) == 0:
        raise ValueError("the delta needs the same windows on both targets")
    value = math.exp((a.sum() - b.sum()) / t.sum()) - 1.0
    if len(a) < MIN_WINDOWS_FOR_CI:
        return DeltaEstimate(value, None, None)
    if np.allclose(a, b):  # identical scores (a target against itself): no spread to resample
        return DeltaEstimate(value, value, value)

    def delta(x: np.ndarray, y: np.ndarray, n: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.exp((x.sum(axis=axis) - y.sum(axis=axis)) / n.sum(axis=axis)) - 1.0

    low, high = _bootstrap((a, b, t), delta, seed)
    return DeltaEstimate(value, low, high)


def first_divergence(ids: Sequence[int], reference: Sequence[int]) -> int | None:
    """Index of the first token where two outputs differ (a prefix differs where the shorter
    ends); None when they are identical."""
    for k, (x, y) in enumerate(zip(ids, reference, strict=False)):
        if x != y:
            return k
    return None if len(ids) == len(reference) else min(len(ids), len(reference))


def _wilson(successes: int, trials: int) -> tuple[float, float]:
    ci = stats.binomtest(successes, trials).proportion_ci(_CONFIDENCE, method="wilson")
    return float(ci.low), float(ci.high)


def agreement(
    outputs: Sequence[str],
    reference: Sequence[str],
    output_ids: Sequence[Sequence[int]] | None = None,
    reference_ids: Sequence[Sequence[int]] | None = None,
) -> AgreementEstimate:
    """Exact matches of greedy outputs with the reference's (text), and, with token ids, where
    each differing pair first diverges."""
    if len(outputs) != len(reference) or not outputs:
        raise ValueError("agreement needs the same, non-empty prompt set on both targets")
    same = sum(a == b for a, b in zip(outputs, reference, strict=True))
    low, high = _wilson(same, len(outputs))
    positions: list[int | None] | None = None
    median = None
    if output_ids is not None and reference_ids is not None:
        positions = [
            None if a == b else first_divergence(x, y)
            for a, b, x, y in zip(outputs, reference, output_ids, reference_ids, strict=True)
        ]
        differing = [p for p in positions if p is not None]
        median = float(statistics.median(differing)) if differing else None
    return AgreementEstimate(len(outputs), same / len(outputs), low, high, positions, median)


def accuracy(correct: Sequence[bool]) -> AccuracyEstimate:
    if not correct:
        raise ValueError("no tasks")
    right = sum(bool(c) for c in correct)
    low, high = _wilson(right, len(correct))
    return AccuracyEstimate(len(correct), right, right / len(correct), low, high)


def bar_verdict(delta: DeltaEstimate | None, bar: float) -> tuple[Verdict, str]:
    """Whether a target meets an accuracy bar (largest perplexity increase allowed, e.g.
    0.02): `meets` when the whole CI is within it, `misses` when the whole CI is above it,
    `uncertain` when the CI straddles it (or there is none): more text would decide."""
    if delta is None:
        return "not measurable", "no perplexity change against the reference"
    shown = f"{delta.value:+.2%}"
    if delta.ci_low is None or delta.ci_high is None:
        return "uncertain", f"{shown} on too few windows for a confidence interval"
    interval = f"{shown} (95% CI {delta.ci_low:+.2%} to {delta.ci_high:+.2%})"
    if delta.ci_high <= bar:
        return "meets", f"{interval} is within +{bar:.2%}"
    if delta.ci_low > bar:
        return "misses", f"{interval} is above +{bar:.2%}"
    return "uncertain", f"{interval} straddles +{bar:.2%}: use a longer text"
