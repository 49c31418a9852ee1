"""Quality statistics: perplexity and its CI over windows, the paired change against the
reference (a real 1% change is called, noise is not), agreement, accuracy, the bar."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis.quality import (
    DeltaEstimate,
    accuracy,
    agreement,
    bar_verdict,
    first_divergence,
    perplexity,
    perplexity_delta,
)

WINDOWS, TOKENS = 60, 512


def _reference(seed: int = 0) -> np.ndarray:
    """Per-window NLL sums of a model at perplexity ~5.5, with window-to-window spread."""
    rng = np.random.default_rng(seed)
    return TOKENS * (math.log(5.5) + rng.normal(0, 0.08, WINDOWS))


def test_perplexity_is_token_weighted_and_its_ci_covers_it() -> None:
    est = perplexity([10.0, 30.0], [10, 10])
    assert est.value == pytest.approx(math.exp(2.0)), "exp(total NLL / total tokens)"
    assert est.ci_low is None and est.windows == 2, "too few windows for an interval"
    est = perplexity(_reference(), [TOKENS] * WINDOWS)
    assert est.ci_low is not None and est.ci_high is not None
    assert est.ci_low < est.value < est.ci_high and est.tokens == WINDOWS * TOKENS
    assert 5.3 < est.value < 5.7


def test_a_real_one_percent_increase_is_called_and_noise_is_not() -> None:
    ref = _reference()
    rng = np.random.default_rng(1)
    worse = ref + TOKENS * math.log(1.01) + rng.normal(0, 1.0, WINDOWS)  # +1%, small noise
    delta = perplexity_delta(worse, ref, [TOKENS] * WINDOWS)
    assert delta.value == pytest.approx(0.01, abs=0.002)
    assert delta.significant and delta.ci_low is not None and delta.ci_low > 0
    noisy = ref + rng.normal(0, 40.0, WINDOWS)  # no change on average, large window noise
    delta = perplexity_delta(noisy, ref, [TOKENS] * WINDOWS)
    assert not delta.significant, f"{delta}: noise must not be called a change"


def test_a_target_against_itself_changes_by_exactly_zero() -> None:
    ref = _reference()
    delta = perplexity_delta(ref, ref, [TOKENS] * WINDOWS)
    assert (delta.value, delta.ci_low, delta.ci_high) == (0.0, 0.0, 0.0)
    assert not delta.significant
    with pytest.raises(ValueError, match="same windows"):
        perplexity_delta(ref, ref[:-1], [TOKENS] * WINDOWS)


def test_the_bar_decides_on_the_whole_interval() -> None:
    delta = DeltaEstimate(0.02, 0.018, 0.022)
    assert bar_verdict(delta, 0.03)[0] == "meets"
    assert bar_verdict(delta, 0.01)[0] == "misses"
    verdict, why = bar_verdict(delta, 0.02)
    assert verdict == "uncertain" and "longer text" in why
    assert bar_verdict(DeltaEstimate(0.0, None, None), 0.02)[0] == "uncertain"
    assert bar_verdict(None, 0.02)[0] == "not measurable"


def test_first_divergence_is_the_first_differing_token() -> None:
    assert first_divergence([1, 2, 3], [1, 2, 3]) is None
    assert first_divergence([1, 2, 3], [1, 5, 3]) == 1
    assert first_divergence([1, 2], [1, 2, 3]) == 2, "a prefix diverges where it ends"


def test_agreement_counts_exact_matches_and_divergences() -> None:
    est = agreement(
        ["a b", "a c", "x"], ["a b", "a d", "y"], [[1, 2], [1, 3], [7]], [[1, 2], [1, 4], [8]]
    )
    assert est.exact_match_rate == pytest.approx(1 / 3)
    assert est.first_divergence == [None, 1, 0] and est.first_divergence_median == 0.5
    assert 0 <= est.ci_low < 1 / 3 < est.ci_high <= 1
    same = agreement(["a"] * 50, ["a"] * 50)
    assert same.exact_match_rate == 1.0 and same.first_divergence is None
    assert same.ci_low > 0.9


def test_accuracy_with_a_wilson_interval() -> None:
    est = accuracy([True] * 8 + [False] * 2)
    assert (est.correct, est.tasks, est.rate) == (8, 10, 0.8)
    assert est.ci_low < 0.8 < est.ci_high
