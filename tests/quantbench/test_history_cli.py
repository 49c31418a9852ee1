"""`quantbench history` over a folder of nightly runs: the findings, history.csv as pandas
reads it, and history.html as Debian's headless Chromium shows it (offline, charts decoded)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from analysis.history import HISTORY_COLUMNS
from quantbench.cli import main
from tests.analysis.browser import load_page
from tests.analysis.helpers import FakeTarget, write_run

STEP = 4


@pytest.fixture(scope="module")
def nights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six nights of two deterministic targets; `b`'s TPOT is 20% higher from night 4 on."""
    folder = tmp_path_factory.mktemp("nightly")
    for night in range(1, 7):
        tpot = 12.0 if night >= STEP else 10.0
        targets = [FakeTarget("a"), FakeTarget("b", tpot_ms=tpot)]
        run = write_run(folder / f"n{night}", targets, loads=(1, 4))
        meta = json.loads((run / "run.json").read_text())
        meta.update(run_id=f"night-{night}", started_at=f"2026-11-{night:02d}T01:30:00+00:00")
        (run / "run.json").write_text(json.dumps(meta))
        run.rename(folder / f"night-{night}")
        (folder / f"n{night}").rmdir()
    return folder


def test_history_of_a_folder_finds_the_step_and_writes_csv_and_html(
    nights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "trends"
    assert main(["history", str(nights), "--out", str(out)]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[-1] == str(out / "history.html")
    assert printed[0] == "6 nights, 6 target x stage series"
    findings = [line.strip() for line in printed if "changed level" in line or "suspect" in line]
    assert findings and all(
        line.startswith(f"night {STEP} (night-{STEP}): b ") for line in findings
    )
    assert any("TPOT p50 changed level, +20.0%" in line for line in findings)

    table = pd.read_csv(out / "history.csv")
    assert list(table.columns) == HISTORY_COLUMNS
    assert set(table["night"]) == set(range(1, 7))
    assert list(table[table["change_point"]]["night"].unique()) == [STEP]


def test_chromium_shows_history_html_offline_with_every_chart(nights: Path, tmp_path: Path) -> None:
    out = tmp_path / "trends"
    assert main(["history", str(nights), "--out", str(out), "--metrics", "tpot_p50,req_per_s"]) == 0
    page = load_page(out / "history.html", tmp_path / "profile")
    outside = [url for url in page.requested if not url.startswith(("file:", "data:"))]
    assert outside == [], outside
    assert page.title == "quantbench history — 6 nights (simulated)"
    assert page.headings[0] == "a — stage 0 (1 user) (simulated)"
    assert len(page.images) == 4 and all(decoded for _, decoded in page.images)
    assert page.tables == 4


def test_history_refuses_a_single_run_and_a_folder_without_runs(
    nights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["history", str(nights / "night-1")]) == 2
    assert "at least two runs; got 1" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["history", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no run directory (with run.json) inside it" in err
    (tmp_path / "a-file").write_text("")
    assert main(["history", str(nights), "--out", str(tmp_path / "a-file")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--out {tmp_path / 'a-file'}: cannot write the history" in err


def test_a_night_that_measured_another_setup_is_named(
    nights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Series follow target x stage: a night whose profile changed (another load at stage 0)
    would show as a change of the stack's level unless it is said."""
    folder = tmp_path / "nightly"
    shutil.copytree(nights, folder)
    for night in (5, 6):
        path = folder / f"night-{night}" / "run.json"
        meta = json.loads(path.read_text())
        meta["config"]["load"]["stages"] = [2, 8]
        path.write_text(json.dumps(meta))
    assert main(["history", str(folder), "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"quantbench history: warning: {folder / 'night-5'} measured another setup than the "
        "night before it: load.stages differs: base not recorded, new [2, 8]; a change point "
        "there may be that, not the stack"
    ]


def test_a_night_that_did_not_finish_is_named(
    nights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A night killed mid-run (no end time) shows as gaps: say so, and how to finish it."""
    folder = tmp_path / "nightly"
    shutil.copytree(nights, folder)
    path = folder / "night-3" / "run.json"
    meta = json.loads(path.read_text())
    del meta["ended_at"]
    path.write_text(json.dumps(meta))
    assert main(["history", str(folder), "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        f"quantbench history: warning: {folder / 'night-3'}: run.json has no end time"
    ), err
    assert f"quantbench run --resume {folder / 'night-3'}" in err[0]
    assert "gaps in the history, not changes" in err[0]
