import math
from pathlib import Path

import pandas as pd
import pytest

from analysis.server.figures import STAGE_COLUMNS
from analysis.server.stage_metrics import load_stage_metrics
from tests.analysis.server.data import T0, write_run
from tests.analysis.server.helpers import stage

STACKS = {"v": "vllm", "t": "tgi", "o": "other"}


@pytest.fixture(scope="module")
def figures(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    run_dir = tmp_path_factory.mktemp("run")
    write_run(run_dir)
    stages = [
        stage("v", 1, T0 + 0.5, T0 + 5.2),
        stage("v", 2, T0 + 5.5, T0 + 9.6),
        stage("t", 1, T0 + 0.5, T0 + 5.2),
        stage("t", 2, T0 + 5.5, T0 + 9.6),
        stage("o", 1, T0 + 0.5, T0 + 5.2),
    ]
    frame = load_stage_metrics(run_dir, stages, STACKS)
    assert list(frame.columns) == STAGE_COLUMNS
    return frame.set_index(["target", "stage"])


def test_window_is_aligned_to_the_scrapes_around_the_measure_window(figures: pd.DataFrame) -> None:
    row = figures.loc[("v", 1)]
    assert (row["measure_start_s"], row["measure_end_s"]) == (T0 + 0.5, T0 + 5.2)
    assert (row["window_start_s"], row["window_end_s"], row["window_s"]) == (T0, T0 + 5, 5.0)
    assert row["scrapes"] == 6 and row["scrape_errors"] == 0
    assert row["source"] == "scrape" and row["stack"] == "vllm" and row["note"] == ""


def test_counters_increase_over_the_window(figures: pd.DataFrame) -> None:
    row = figures.loc[("v", 1)]
    # 4 requests finish per second (aborts are counted apart and left out), 40 prompt and
    # 20 generated tokens per second, over 5 s.
    assert row["requests_finished"] == 20 and row["requests_finished_per_s"] == 4
    assert row["prompt_tokens"] == 200 and row["generation_tokens"] == 100
    assert row["generation_tokens_per_s"] == 20
    assert row["preemptions"] == 6  # 3 after the scrapes at +1 and +3
    assert math.isnan(figures.loc[("t", 1)]["preemptions"]), "TGI exports none"


def test_histogram_mean_and_bucket_interpolated_quantiles(figures: pd.DataFrame) -> None:
    row = figures.loc[("v", 1)]
    # 20 TTFTs: 5 × (0.08, 0.12, 0.3, 0.12). Buckets 0.1: 5, 0.25: 15, 0.5: 20.
    assert row["ttft_count"] == 20
    assert row["ttft_mean_ms"] == pytest.approx(155.0)
    assert row["ttft_p50_ms"] == pytest.approx(100 + 150 * (10 - 5) / 10)  # rank 10 of 20
    assert row["ttft_p95_ms"] == pytest.approx(250 + 250 * (19 - 15) / 5)  # rank 19 of 20
    assert row["quantile_method"] == "bucket-interpolated"
    assert math.isnan(row["itl_mean_ms"]), "not exported by this page"


def test_gauges_mean_and_max_over_the_scrapes_after_the_first(figures: pd.DataFrame) -> None:
    row = figures.loc[("v", 1)]
    assert row["running_mean"] == pytest.approx((0 + 1 + 2 + 0 + 1) / 5)
    assert row["running_max"] == 2
    assert row["kv_cache_usage_mean"] == pytest.approx((0 + 0.1 + 0.2 + 0.3 + 0) / 5)
    assert row["kv_cache_usage_max"] == pytest.approx(0.3)
    assert not row["restarted"]


def test_restart_is_flagged_and_the_increase_stays_sane(figures: pd.DataFrame) -> None:
    row = figures.loc[("v", 2)]
    assert row["restarted"]
    assert "process_start_time_seconds changed" in row["restart_reason"]
    assert "vllm:request_success_total" in row["restart_reason"]
    assert "vllm:generation_tokens_total" in row["restart_reason"]
    assert row["scrape_errors"] == 1, "the scrape while the server was down"
    # 30 → 34, down, 0 → 4: increase() adds the post-reset value, never 4 - 34.
    assert row["requests_finished"] == 8
    assert row["generation_tokens"] == 40


def test_a_series_born_inside_the_window_counts_from_zero(figures: pd.DataFrame) -> None:
    row = figures.loc[("t", 1)]  # TGI creates tgi_request_success at its first success
    assert (row["window_start_s"], row["window_end_s"]) == (T0 + 0.25, T0 + 4.25)
    assert row["requests_finished"] == 4, "absent (0), then 3, then 4"
    assert figures.loc[("t", 2)]["requests_finished"] == 19 - 7  # scrapes k=5 and k=9
    assert math.isnan(row["ttft_mean_ms"]), "TGI has no TTFT histogram"
    assert row["waiting_mean"] == pytest.approx((1 + 0 + 1 + 0) / 4)


def test_other_stack_has_no_figures(figures: pd.DataFrame) -> None:
    row = figures.loc[("o", 1)]
    assert math.isnan(row["requests_finished"]) and not row["restarted"]
    assert row["note"] == "fewer than two successful scrapes cover the window"


def test_short_windows_are_noted(tmp_path: Path) -> None:
    write_run(tmp_path)
    frame = load_stage_metrics(tmp_path, [stage("v", 1, T0 + 0.5, T0 + 2.0)], STACKS)
    assert "shorter than twice the scrape interval" in frame.loc[0, "note"]
