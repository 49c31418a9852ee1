import numpy as np
import pytest

from loadtest.arrivals import arrival_times


def test_constant_arrivals_are_evenly_spaced() -> None:
    times = arrival_times(4.0, 10.0, 12.0, "constant", seed=0)
    assert times == pytest.approx([10.0, 10.25, 10.5, 10.75, 11.0, 11.25, 11.5, 11.75])


@pytest.mark.parametrize(
    ("process", "burstiness", "cv"),
    [("poisson", 1.0, 1.0), ("gamma", 0.25, 2.0), ("gamma", 4.0, 0.5)],
)
def test_random_arrivals_have_the_rate_and_burstiness_asked_for(
    process: str, burstiness: float, cv: float
) -> None:
    times = np.array(arrival_times(50.0, 0.0, 200.0, process, seed=3, burstiness=burstiness))  # type: ignore[arg-type]
    assert len(times) / 200.0 == pytest.approx(50.0, rel=0.05)
    gaps = np.diff(times)
    assert gaps.std() / gaps.mean() == pytest.approx(cv, rel=0.1)
    assert times.min() >= 0.0 and times.max() < 200.0


def test_same_seed_same_schedule_other_seed_other_schedule() -> None:
    first = arrival_times(10.0, 0.0, 30.0, "poisson", seed="7:0")
    assert first == arrival_times(10.0, 0.0, 30.0, "poisson", seed="7:0")
    assert first != arrival_times(10.0, 0.0, 30.0, "poisson", seed="7:1")
