import random

import pytest
from pydantic import ValidationError

from loadtest.config import LengthDist, LoadConfig, WorkloadConfig, parse_duration
from loadtest.workload import RequestFactory, sample_length


def test_bare_integer_means_fixed() -> None:
    workload = WorkloadConfig.model_validate({"prompt_tokens": 100, "output_tokens": 20})
    assert workload.prompt_tokens == LengthDist(dist="fixed", mean=100)


@pytest.mark.parametrize(
    "dist",
    [
        LengthDist(dist="uniform", mean=50, min=10, max=90),
        LengthDist(dist="normal", mean=50, std=20, min=10, max=90),
        LengthDist(dist="lognormal", mean=50, std=30, min=10, max=90),
    ],
)
def test_samples_stay_within_bounds_and_near_the_mean(dist: LengthDist) -> None:
    rng = random.Random(0)
    values = [sample_length(dist, rng) for _ in range(4000)]
    assert min(values) >= 10 and max(values) <= 90
    assert abs(sum(values) / len(values) - 50) < 4


def test_requests_are_reproducible_per_seed_and_stream() -> None:
    workload = WorkloadConfig(
        prompt_tokens=LengthDist(dist="uniform", mean=20, min=5, max=40), seed=7
    )
    first = [RequestFactory(workload, 3).next() for _ in range(2)]
    again = [RequestFactory(workload, 3).next() for _ in range(2)]
    other = RequestFactory(workload, 4).next()
    assert first == again
    assert other != first[0]
    assert len(first[0].prompt.split()) == first[0].prompt_tokens


def test_durations() -> None:
    assert parse_duration("30s") == 30 and parse_duration("5m") == 300
    assert parse_duration("250ms") == 0.25 and parse_duration(4) == 4
    assert LoadConfig(stage_duration="1m").stage_duration == 60  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="not a duration"):
        LoadConfig(stage_duration="soon")  # type: ignore[arg-type]


def test_inconsistent_distribution_is_rejected() -> None:
    with pytest.raises(ValidationError, match="below min"):
        LengthDist(dist="uniform", mean=5, min=10, max=5)
    with pytest.raises(ValidationError, match="needs std"):
        LengthDist(dist="normal", mean=5)
