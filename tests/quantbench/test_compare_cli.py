"""`quantbench compare` as a nightly job runs it: exit codes, the files CI reads (Markdown,
JUnit, JSON), the report of the compared run, and one clear line for runs it refuses."""

from __future__ import annotations

import json
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
import pytest

from quantbench.cli import main
from tests.simulated_runs import AWQ, FP16, NIGHTLY_LOAD, slowed, write_simulated_run
from tests.terminal import on_a_terminal

LONGER = NIGHTLY_LOAD | {"stage_duration": 30.0}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    return {
        "base": write_simulated_run(root, "base", {"awq": AWQ}, seed=1, load=LONGER),
        "slow": write_simulated_run(root, "slow", {"awq": slowed(AWQ, 1.10)}, seed=2, load=LONGER),
        "same": write_simulated_run(root, "same", {"awq": AWQ}, seed=3, load=LONGER),
    }


def copy_run(run: Path, to: Path) -> Path:
    shutil.copytree(run, to)
    for derived in ("comparison.json", "comparison.md"):
        (to / derived).unlink(missing_ok=True)
    return to


def edit_run_json(run: Path, edit) -> None:  # type: ignore[no-untyped-def]
    data = json.loads((run / "run.json").read_text())
    edit(data)
    (run / "run.json").write_text(json.dumps(data))


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_a_slowdown_exits_1_and_every_output_names_the_regression(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new = copy_run(runs["slow"], tmp_path / "slow")
    md, junit, js = tmp_path / "verdict.md", tmp_path / "compare.xml", tmp_path / "compare.json"
    args = ["compare", str(runs["base"]), str(new), "--markdown", str(md), "--junit", str(junit)]
    assert main([*args, "--json", str(js)]) == 1
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1] == str(new / "comparison.md")
    assert "quantbench compare: REGRESSED (simulated)" in out

    verdict = md.read_text()
    assert verdict == (new / "comparison.md").read_text()
    rows = [line for line in verdict.splitlines() if line.startswith("| **REGRESSED**")]
    named = {line.split("|")[4].strip() for line in rows}
    assert {"TPOT p50", "TPOT p95", "output tok/s"} <= named, verdict

    tree = ET.parse(junit).getroot()
    failures = {
        case.get("name") for case in tree.iter("testcase") if case.find("failure") is not None
    }
    assert "stage 0 (16 users): TPOT p95" in failures
    assert "stage 0 (16 users): output tok/s" in failures
    assert int(tree.get("failures") or 0) == len(failures) == len(rows)

    result = json.loads(js.read_text())
    assert result["verdict"] == "regressed" and result["counts"]["regressed"] == len(rows)
    changes = pd.DataFrame(result["changes"])
    tpot = changes[changes["metric"] == "tpot_p95"].iloc[0]
    assert tpot["verdict"] == "regressed" and tpot["low"] > 0.05

    report = (new / "report.md").read_text()
    assert "## Comparison with base run" in report and "**REGRESSED**" in report
    assert "Comparison with base run" in (new / "report.html").read_text()


def test_the_same_setup_with_another_seed_exits_0(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new = copy_run(runs["same"], tmp_path / "same")
    assert main(["compare", str(runs["base"]), str(new), "--no-report"]) == 0
    assert "no regression (simulated)" in capsys.readouterr().out
    assert not (new / "report.md").exists()  # --no-report
    assert json.loads((new / "comparison.json").read_text())["verdict"] == "passed"


def test_an_invalid_run_exits_2_naming_the_stage_and_why(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = copy_run(runs["same"], tmp_path / "broken")
    lines = (broken / "requests.jsonl").read_text().splitlines()
    failed = []
    for i, line in enumerate(lines):
        record = json.loads(line)
        if i % 10 == 0:  # 10% of the requests fail: the stage is invalid (limit 1%)
            record.update(
                outcome="http_error",
                http_status=503,
                output_tokens=0,
                itl_ms=[],
                ttft_ms=None,
                tpot_ms=None,
                e2e_ms=None,
                first_token_ns=None,
            )
        failed.append(json.dumps(record))
    (broken / "requests.jsonl").write_text("\n".join(failed) + "\n")
    assert main(["compare", str(runs["base"]), str(broken)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"new run {broken}: target awq stage 0 (16 users) is invalid" in line
    assert "error rate" in line


def test_a_run_that_stopped_early_exits_2(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A target that went down before its last stage must not pass the gate unseen."""
    short = copy_run(runs["same"], tmp_path / "short")
    (short / "stages.jsonl").write_text("")
    assert main(["compare", str(runs["base"]), str(short)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"base run {runs['base']} measured target awq stage 0 (16 users) but the new" in line
    assert f"finish it with `quantbench run --resume {short}`" in line


def test_a_workload_mismatch_exits_2_naming_the_field(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = copy_run(runs["same"], tmp_path / "other")
    edit_run_json(other, lambda d: d["config"]["workload"]["output_tokens"].update(mean=64))
    assert main(["compare", str(runs["base"]), str(other)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "not comparable: workload.output_tokens.mean differs: base 32.0, new 64" in line


def test_a_different_target_set_exits_2(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = copy_run(runs["same"], tmp_path / "more")
    extra = {"name": "fp16", "stack": "vllm", "quant": "fp16", "simulated": True, "sim": FP16}
    edit_run_json(other, lambda d: d["targets"].append(extra))
    assert main(["compare", str(runs["base"]), str(other)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "targets differs: base only in base: none, new only in new: ['fp16']" in line


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("latency: fast\n", "latency: 'fast' is not a percentage"),
        ("metrics: {tpot_p96: 3}\n", "unknown metric 'tpot_p96'"),
        ("latncy: 5\n", "latncy: unknown key"),
    ],
)
def test_a_bad_thresholds_file_is_one_line(
    runs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: str,
    expected: str,
) -> None:
    path = tmp_path / "thresholds.yaml"
    path.write_text(content)
    code = main(["compare", str(runs["base"]), str(runs["same"]), "--thresholds", str(path)])
    assert code == 2
    line = one_error_line(capsys.readouterr().err)
    assert str(path) in line and expected in line


def test_a_looser_threshold_file_lets_the_slowdown_pass(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "thresholds.yaml"
    path.write_text("targets:\n  awq: {latency: 25%, throughput: 25%}\nlatency: 5\n")
    new = copy_run(runs["slow"], tmp_path / "slow")
    args = ["compare", str(runs["base"]), str(new), "--thresholds", str(path), "--no-report"]
    assert main([*args, "--metrics", "tpot_p95,output_tok_per_s"]) == 0
    table = pd.DataFrame(json.loads((new / "comparison.json").read_text())["changes"])
    assert list(table["metric"]) == ["tpot_p95", "output_tok_per_s", "capacity"][: len(table)]
    assert set(table["threshold"]) == {0.25}
    assert main(["compare", str(runs["base"]), str(new), "--metrics", "tpot_p99"]) == 2
    assert "unknown metric 'tpot_p99'" in capsys.readouterr().err


def test_on_a_terminal_regressions_come_first(runs: dict[str, Path], tmp_path: Path) -> None:
    new = copy_run(runs["slow"], tmp_path / "slow")
    code, screen = on_a_terminal(
        ["compare", str(runs["base"]), str(new), "--no-report"], columns=160
    )
    assert code == 1, screen
    assert "Traceback" not in screen
    verdicts = re.findall(r"│ (regressed|inconclusive|improved)\s+│ awq", screen)
    assert verdicts and verdicts[0] == "regressed"
    assert verdicts == sorted(verdicts, key=["regressed", "inconclusive", "improved"].index)
    assert re.search(r"│ TPOT p95\s+│", screen)


def test_a_misspelt_target_in_the_thresholds_file_is_one_line(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`targets: {awk: ...}` would otherwise leave awq on the defaults: a silent wrong verdict."""
    path = tmp_path / "thresholds.yaml"
    path.write_text("targets:\n  awk: {latency: 25%}\n")
    code = main(["compare", str(runs["base"]), str(runs["same"]), "--thresholds", str(path)])
    assert code == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"{path}: targets: 'awk' is not a target of these runs (have: awq)" in line


def test_corrupt_records_are_named_not_skipped_silently(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new = copy_run(runs["same"], tmp_path / "damaged")
    (new / "requests.parquet").unlink(missing_ok=True)  # the records are read from the JSON lines
    lines = (new / "requests.jsonl").read_text().splitlines(keepends=True)
    lines[3] = '{"target": "awq", "stage\n'
    (new / "requests.jsonl").write_text("".join(lines))
    assert main(["compare", str(runs["base"]), str(new), "--no-report"]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"quantbench: warning: new run {new}: requests.jsonl: 1 corrupt line skipped" in err
    warnings = json.loads((new / "comparison.json").read_text())["warnings"]
    assert any("1 corrupt line skipped (line 4" in w for w in warnings), warnings


def test_a_run_compared_with_itself_exits_2(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A CI step given tonight's run twice (or a copy of it) would always pass."""
    assert main(["compare", str(runs["same"]), str(runs["same"]), "--no-report"]) == 2
    assert "are the same run (same)" in one_error_line(capsys.readouterr().err)
    night = copy_run(runs["same"], tmp_path / "night")
    edit_run_json(night, lambda d: d.update(started_at="2026-11-02T01:30:00+00:00"))
    copy = copy_run(night, tmp_path / "copy")
    assert main(["compare", str(night), str(copy), "--no-report"]) == 2
    assert "are the same run (same)" in one_error_line(capsys.readouterr().err)


def test_a_run_without_its_records_names_the_missing_file(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lost = copy_run(runs["same"], tmp_path / "lost")
    (lost / "requests.jsonl").unlink()
    (lost / "requests.parquet").unlink(missing_ok=True)
    assert main(["compare", str(runs["base"]), str(lost), "--no-report"]) == 2
    warning, error = capsys.readouterr().err.strip().splitlines()
    assert warning == (
        f"quantbench: warning: new run {lost}: {lost / 'requests.jsonl'}: missing, so its 1 "
        "stages have no request records (restore the file, or rerun them)"
    )
    assert error.startswith(f"quantbench: error: new run {lost}: target awq stage 0")
