from pathlib import Path

import pandas as pd

from analysis.document import to_markdown
from analysis.search_view import (
    judged,
    load_searches,
    search_blocks,
    searched_capacity,
    with_searches,
)
from loadtest.search import SEARCH_FILE, SearchStep

CONFIG = {"load": {"mode": "search", "search": {"start": 10, "precision": 0.05}}}


def write_steps(run_dir: Path, path: list[tuple[float, str | None]]) -> None:
    lines = [
        SearchStep(target="a", step=i, stage=i, rate=rate, verdict=verdict, early=verdict
                   == "broken", ok=60, over=[0 if verdict == "met" else 30]).model_dump_json()
        for i, (rate, verdict) in enumerate(path)
    ]  # fmt: skip
    (run_dir / SEARCH_FILE).write_text("\n".join(lines) + "\n")


def test_a_search_s_answer_becomes_the_target_s_capacity_with_its_interval(
    tmp_path: Path,
) -> None:
    write_steps(tmp_path, [(10, "met"), (20, "broken"), (15, "met"), (17.5, "broken"),
                           (16.25, "met")])  # fmt: skip
    searches = load_searches(tmp_path, CONFIG)
    search = searches["a"]
    assert (search.answer.status, search.answer.low, search.answer.high) == ("found", 16.25, 17.5)
    rows = pd.DataFrame(
        {"target": "a", "load": [10, 15, 16.25, 17.5, 20], "req_per_s": [10, 15, 16, 17, 18],
         "output_tok_per_s": [100, 150, 160, 170, 180]}
    )  # fmt: skip
    cap = searched_capacity(rows, search)
    assert cap.status == "searched" and cap.sustains
    assert cap.load == 16.875 and cap.half_width == 0.625
    assert cap.req_per_s == 16 * 16.875 / 16.25  # the met stage's rate, scaled to the answer
    assert cap.text() == "16.9 ± 0.62" and cap.text("req_per_s") == "≈ 16.6"
    assert with_searches({}, rows, searches) == {}  # only targets the summary has
    table = to_markdown(search_blocks(searches, {"a": "a"}))
    assert "16.9 ± 0.62 req/s (met at 16.2, broken at 17.5; precision ±5%)" in table
    assert "| 4 | 3 | 17.5 | broken | yes | 60 | 0 | 30 | 15 – 17.5 |" in table
    assert "| 5 | 4 | 16.25 | met | no | 60 | 0 | 0 | 16.25 – 17.5 |" in table


def test_a_run_that_did_not_search_has_no_searches(tmp_path: Path) -> None:
    write_steps(tmp_path, [(10, "met")])
    assert load_searches(tmp_path, {"load": {"mode": "rate"}}) == {}
    assert load_searches(tmp_path / "missing", CONFIG) == {}


def test_a_search_that_broke_at_its_floor_sustains_nothing(tmp_path: Path) -> None:
    write_steps(tmp_path, [(0.1, "broken")])
    config = {"load": {"mode": "search", "search": {"start": 0.1}}}
    cap = searched_capacity(pd.DataFrame(), load_searches(tmp_path, config)["a"])
    assert cap.status == "none" and "below 0.1 req/s" in cap.limited_by


def test_a_met_stage_the_analysis_found_invalid_counts_as_broken(tmp_path: Path) -> None:
    # The search met the SLO at the generator's ceiling (stage 2), but the generator fell
    # behind there: the answer must rest on stage 1, never on an untrusted stage.
    lines = [
        SearchStep(target="a", step=i, stage=i, rate=rate, verdict="met", ok=60, over=[0],
                   max_rate=40.0).model_dump_json()
        for i, rate in enumerate([10.0, 20.0, 40.0])
    ]  # fmt: skip
    (tmp_path / SEARCH_FILE).write_text("\n".join(lines) + "\n")
    searches = load_searches(tmp_path, CONFIG)
    assert searches["a"].answer.status == "above_max"
    assert "generator times accurately" in searches["a"].answer.text()
    summary = pd.DataFrame(
        {"target": "a", "stage": [0, 1, 2], "load": [10.0, 20.0, 40.0],
         "valid": [True, True, False],
         "invalid_reason": [None, None, "p99 schedule lag 102 ms > 5 ms"],
         "req_per_s": [10, 20, 40], "output_tok_per_s": [100, 200, 400]}
    )  # fmt: skip
    search = judged(searches, summary)["a"]
    assert (search.answer.status, search.answer.low, search.answer.high) == (
        "unfinished", 20.0, 40.0,
    )  # fmt: skip
    cap = searched_capacity(summary, search)
    assert cap.load == 20.0 and cap.status == "at_stage"
    assert "stage 3 at 40 req/s is invalid (p99 schedule lag 102 ms > 5 ms)" in cap.limited_by
    table = to_markdown(search_blocks({"a": search}, {"a": "a"}))
    assert "| 3 | 2 | 40 | invalid |" in table
    assert judged(searches, summary.assign(valid=True))["a"].answer.status == "above_max"
