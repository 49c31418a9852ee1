"""The gate's verdicts on runs of the simulator's engine model (tests/simulated_runs.py): a 10%
decode slowdown regresses TPOT and throughput, a 3% one never regresses, and twenty A/A pairs
give at most one false regression."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from analysis.change import Change
from analysis.pipeline import load_run, stage_figures
from analysis.regression import METRICS, RunFigures, compare_runs, decide, invalid_stages
from analysis.thresholds import Thresholds
from tests.simulated_runs import AWQ, NIGHTLY_LOAD, slowed, write_simulated_run

LONGER = NIGHTLY_LOAD | {"stage_duration": 30.0}  # enough samples to resolve 10% on throughput


def figures(run_dir: Path) -> RunFigures:
    run = load_run(run_dir)
    found = stage_figures(run)
    return RunFigures.of(found.summary, found.records, run.requests, run.stages, run.slo)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> RunFigures:
    root = tmp_path_factory.mktemp("base")
    return figures(write_simulated_run(root, "base", {"awq": AWQ}, seed=1, load=LONGER))


def _verdicts(table: pd.DataFrame) -> dict[str, str]:
    return dict(zip(table["metric"], table["verdict"], strict=True))


def test_a_10_percent_decode_slowdown_regresses_tpot_and_throughput(
    base: RunFigures, tmp_path: Path
) -> None:
    new = figures(
        write_simulated_run(tmp_path, "new", {"awq": slowed(AWQ, 1.10)}, seed=2, load=LONGER)
    )
    table = compare_runs(base, new)
    verdicts = _verdicts(table[table["stage"] == 0])
    print(table[["metric", "change", "low", "high", "verdict"]].to_string())
    assert verdicts["tpot_p50"] == "regressed"
    assert verdicts["tpot_p95"] == "regressed"
    assert verdicts["output_tok_per_s"] == "regressed"
    assert verdicts["ttft_p50"] != "improved"
    regressed = table[table["verdict"] == "regressed"]
    assert list(table["verdict"][: len(regressed)]) == ["regressed"] * len(regressed)  # first
    tpot = table[table["metric"] == "tpot_p50"].iloc[0]
    assert 0.05 < tpot["low"] <= tpot["change"] <= tpot["high"] < 0.15


def test_a_3_percent_slowdown_is_never_a_regression(base: RunFigures, tmp_path: Path) -> None:
    new = figures(
        write_simulated_run(tmp_path, "new", {"awq": slowed(AWQ, 1.03)}, seed=3, load=LONGER)
    )
    table = compare_runs(base, new)
    print(table[["metric", "change", "low", "high", "verdict"]].to_string())
    assert set(table["verdict"]) <= {"unchanged", "inconclusive", "improved"}
    tpot = table[table["metric"] == "tpot_p50"].iloc[0]
    assert tpot["verdict"] in ("unchanged", "inconclusive") and 0 < tpot["change"] < 0.05


def test_twenty_a_a_pairs_give_at_most_one_false_regression(tmp_path: Path) -> None:
    """Same profile, different seeds: whatever differs is sampling noise."""
    tables = []
    for pair in range(20):
        a = write_simulated_run(tmp_path, f"a{pair}", {"awq": AWQ}, seed=1000 + pair)
        b = write_simulated_run(tmp_path, f"b{pair}", {"awq": AWQ}, seed=2000 + pair)
        tables.append(compare_runs(figures(a), figures(b)))
    every = pd.concat(tables, ignore_index=True)
    false = int((every["verdict"] == "regressed").sum())
    print(
        f"A/A: {false} false regressions in {len(every)} figures of 20 pairs; verdicts "
        f"{every['verdict'].value_counts().to_dict()}"
    )
    assert len(every) == 20 * len(METRICS)
    assert false <= 1


def test_thresholds_decide_and_the_most_specific_one_wins() -> None:
    thresholds = Thresholds.model_validate(
        {
            "latency": "8%",
            "metrics": {"tpot_p95": 4},
            "targets": {"tgi": {"latency": 10, "metrics": {"ttft_p95": "12 %"}}},
        }
    )
    assert thresholds.percent("vllm", "ttft_p50", "latency") == 8
    assert thresholds.percent("vllm", "tpot_p95", "latency") == 4
    assert thresholds.percent("tgi", "tpot_p95", "latency") == 10
    assert thresholds.percent("tgi", "ttft_p95", "latency") == 12
    assert thresholds.percent("tgi", "error_rate", "error_rate") == 0.5
    assert thresholds.unknown_metrics(set(METRICS)) == []
    assert Thresholds.model_validate({"metrics": {"tpot_p96": 3}}).unknown_metrics(
        set(METRICS)
    ) == ["tpot_p96"]


@pytest.mark.parametrize(
    ("low", "high", "better", "verdict"),
    [
        (0.06, 0.12, False, "regressed"),
        (0.04, 0.12, False, "inconclusive"),
        (-0.02, 0.03, False, "unchanged"),
        (-0.12, -0.06, False, "improved"),
        (-0.12, -0.04, True, "regressed"),  # throughput: lower is worse
        (-0.02, 0.02, True, "unchanged"),
        (0.04, 0.09, True, "improved"),
    ],
)
def test_decide(low: float, high: float, better: bool, verdict: str) -> None:
    threshold = 0.03 if better else 0.05
    change = Change((low + high) / 2, low, high, 100, 100, "test")
    assert decide(change, threshold, better)[0] == verdict


def test_an_invalid_stage_is_named_with_its_reason(base: RunFigures) -> None:
    summary = base.summary.copy()
    summary["valid"] = False
    summary["invalid_reason"] = "error rate 5.0% > 1%"
    broken = RunFigures(summary, base.records, base.scheduled_ns, base.stages, base.slo)
    assert invalid_stages(base, broken, [("awq", 0)]) == [("new", "awq", 0, "error rate 5.0% > 1%")]
