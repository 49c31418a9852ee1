"""Change points and suspect nights: a step at night 6 of simulated nights is found there and
nowhere else; one odd night is suspect, not a new level; noise alone is no finding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.config import SloConfig
from analysis.history import (
    HISTORY_COLUMNS,
    Night,
    change_points,
    history,
    noise_sigma,
    suspects,
)
from analysis.pipeline import load_run, stage_figures
from analysis.regression import METRICS
from tests.simulated_runs import AWQ, FP16, slowed, write_simulated_run

STEP_NIGHT = 6
NIGHTS = 10


@pytest.fixture(scope="module")
def nights(tmp_path_factory: pytest.TempPathFactory) -> list[Night]:
    """Ten nights of two targets; from night 6 on, the AWQ target decodes 10% slower."""
    root = tmp_path_factory.mktemp("nights")
    found = []
    for night in range(1, NIGHTS + 1):
        awq = slowed(AWQ, 1.10) if night >= STEP_NIGHT else AWQ
        run = load_run(
            write_simulated_run(root, f"night{night:02d}", {"awq": awq, "fp16": FP16}, seed=night)
        )
        found.append(
            Night(run.meta.run_id, f"2026-11-{night:02d}", stage_figures(run).summary, run.slo)
        )
    return found


def test_a_step_at_night_6_is_found_there_and_nothing_else_is_flagged(nights: list[Night]) -> None:
    table = history(nights)
    assert list(table.columns) == HISTORY_COLUMNS
    assert len(table) == NIGHTS * (2 * (len(METRICS) - 1) + 2)  # per stage, plus capacity
    points = table[table["change_point"]]
    print(points[["night", "target", "metric", "level_change"]].to_string())
    assert set(points["target"]) == {"awq"}
    assert all(abs(night - STEP_NIGHT) <= 1 for night in points["night"])
    assert "tpot_p50" in set(points["metric"])
    tpot = points[points["metric"] == "tpot_p50"].iloc[0]
    assert tpot["night"] == STEP_NIGHT and 0.05 < tpot["level_change"] < 0.15
    assert not table["suspect"].any(), table[table["suspect"]]


def test_one_odd_night_is_suspect_not_a_change_point() -> None:
    spec = METRICS["tpot_p95"]
    rng = np.random.default_rng(4)
    values = 20 + rng.normal(0, 0.2, 12)
    values[7] = 26.0  # one night 30% slower, then back
    sigma = noise_sigma(values)
    changes = change_points(values, spec, 0.05, sigma)
    assert changes == {}
    assert suspects(values, changes, 0.05, spec, sigma) == {7}


def test_noise_alone_gives_no_finding_in_a_hundred_series() -> None:
    spec = METRICS["ttft_p95"]
    rng = np.random.default_rng(8)
    found = 0
    for _ in range(100):
        values = 100 * (1 + rng.normal(0, 0.03, 14))  # 3% night-to-night noise
        sigma = noise_sigma(values)
        changes = change_points(values, spec, 0.05, sigma)
        found += len(changes) + len(suspects(values, changes, 0.05, spec, sigma))
    print(f"findings in 100 pure-noise series of 14 nights: {found}")
    assert found <= 3


def test_a_change_smaller_than_the_threshold_is_not_reported() -> None:
    spec = METRICS["tpot_p50"]
    values = np.array([10.0, 10.01, 9.99, 10.0, 10.02, 10.2, 10.21, 10.19, 10.2, 10.22])
    sigma = noise_sigma(values)
    assert change_points(values, spec, 0.05, sigma) == {}  # +2%: real, but under 5%
    assert change_points(values, spec, 0.01, sigma) == {5: pytest.approx(0.0196, abs=1e-3)}


def test_an_invalid_night_is_a_gap_not_a_value(nights: list[Night]) -> None:
    broken = nights[2].summary.copy()
    broken["valid"] = False
    changed = [*nights[:2], Night("bad", "2026-11-03", broken, SloConfig()), *nights[3:]]
    table = history(changed, metrics=["tpot_p50"])
    third = table[(table["night"] == 3) & (table["target"] == "awq")].iloc[0]
    assert third["value"] is None or pd.isna(third["value"])
    assert not bool(third["valid"])
    points = table[table["change_point"]]
    assert list(points["night"]) == [STEP_NIGHT]


def test_history_csv_and_html(nights: list[Night], tmp_path: Path) -> None:
    from analysis.history_report import findings, write_history

    table = history(nights)
    csv, html = write_history(table, tmp_path / "out")
    back = pd.read_csv(csv)
    assert list(back.columns) == HISTORY_COLUMNS and len(back) == len(table)
    assert back["change_point"].dtype == bool
    page = html.read_text()
    assert "quantbench history — 10 nights (simulated)" in page
    assert "http://" not in page and "https://" not in page and "data:image/png;base64," in page
    lines = findings(table)
    assert lines and all(
        f"night {STEP_NIGHT} " in line or "night 5 " in line or "night 7 " in line for line in lines
    )
