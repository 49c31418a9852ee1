import math

import pytest
from pydantic import ValidationError

from loadtest.config import LoadConfig, SearchConfig
from loadtest.search import RateSearch, SearchStep, replay


def run(knee: float, config: SearchConfig, noise: dict[int, str] | None = None) -> RateSearch:
    """Drive a search against an oracle that meets the SLO up to `knee` req/s."""
    search = RateSearch(config)
    while (rate := search.next_rate()) is not None:
        verdict = "met" if rate <= knee else "broken"
        search.record(rate, (noise or {}).get(search.steps, verdict))  # type: ignore[arg-type]
    return search


@pytest.mark.parametrize("knee", [0.37, 3.0, 7.7, 41.0, 260.0])
def test_the_answer_brackets_the_knee_within_the_precision(knee: float) -> None:
    config = SearchConfig(start=4, precision=0.05)
    search = run(knee, config)
    answer = search.answer()
    assert answer.status == "found"
    assert answer.low is not None and answer.high is not None and answer.rate is not None
    assert answer.low <= knee < answer.high
    assert answer.high - answer.low <= 2 * 0.05 * answer.rate + 1e-12
    assert abs(answer.rate - knee) <= 0.05 * answer.rate  # within the stated ±5%
    # a fixed grid of the same resolution over 0.1–1000 req/s: ~ln(10⁴)/ln(1.105) stages
    grid = math.log(1000 / 0.1) / math.log(1.05 / 0.95)
    assert search.steps <= grid / 4


def test_the_search_stops_at_its_bounds() -> None:
    assert run(5000, SearchConfig(max_rate=100)).answer().status == "above_max"
    below = run(0.01, SearchConfig(min_rate=0.5)).answer()
    assert below.status == "below_min" and below.high == 0.5
    capped = RateSearch(SearchConfig(max_rate=100), ceiling=30)
    while (rate := capped.next_rate()) is not None:
        assert rate <= 30
        capped.record(rate, "met")
    assert capped.answer().status == "above_max" and capped.answer().low == 30


def test_a_stage_without_a_verdict_counts_as_broken() -> None:
    """A stage too short of samples to judge (verdict None) never raises the answer."""
    search = RateSearch(SearchConfig(start=8))
    search.record(8.0, None)
    assert search.high == 8.0 and search.next_rate() == 4.0


def test_max_stages_leaves_the_bracket_unfinished_and_replay_rebuilds_it() -> None:
    config = SearchConfig(start=1, max_stages=4)
    search = run(100.0, config)
    assert search.steps == 4 and search.answer().status == "unfinished"
    assert "met at 8" in search.answer().text()
    steps = [SearchStep(target="t", step=i, stage=i, rate=r, verdict="met")
             for i, r in enumerate([1.0, 2.0, 4.0, 8.0])]  # fmt: skip
    assert replay(steps, config)[0].answer() == search.answer()


def test_bad_search_settings_are_refused_with_the_field() -> None:
    with pytest.raises(ValidationError, match=r"min_rate .* must be below max_rate"):
        SearchConfig(min_rate=10, max_rate=5)
    with pytest.raises(ValidationError, match=r"start .* must lie between"):
        SearchConfig(start=0.01)
    with pytest.raises(ValidationError, match="use mode: search"):
        LoadConfig(mode="rate", search=SearchConfig())
    assert LoadConfig(mode="search").search == SearchConfig()
