"""One error tree, caught once in the CLI: every user mistake is one line and the exit code
of its kind, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from analysis.rundir import RunDirError
from quantbench.cli import main
from quantbench.errors import (
    ConfigError,
    HarnessError,
    InputError,
    QuantbenchError,
    ThresholdError,
    translated,
)
from services.sim.errors import SimConfigError


@pytest.mark.parametrize(
    ("raised", "kind", "message"),
    [
        (RunDirError("runs/x/run.json: not found"), InputError, "runs/x/run.json: not found"),
        (SimConfigError("unknown simulated stack 'x'"), ConfigError, "unknown simulated stack"),
        (
            OSError(28, "No space left on device", "runs/x/requests.parquet"),
            HarnessError,
            "runs/x/requests.parquet: No space left on device",
        ),
    ],
)
def test_lower_packages_errors_become_their_kind(
    raised: Exception, kind: type[QuantbenchError], message: str
) -> None:
    with pytest.raises(kind, match=message) as info, translated():
        raise raised
    assert info.value.__cause__ is raised and info.value.exit_code == 2


def test_a_failed_threshold_exits_1_and_everything_else_2() -> None:
    assert ThresholdError("x").exit_code == 1
    assert {k("x").exit_code for k in (ConfigError, InputError, HarnessError)} == {2}


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


CONFIG = "targets:\n  - {name: a, url: 'http://127.0.0.1:9', model: m}\n"


@pytest.mark.parametrize("where", ["file", "proc"])
def test_an_out_folder_that_cannot_be_made_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    config = tmp_path / "bench.yaml"
    config.write_text(CONFIG)
    out = config / "runs" if where == "file" else Path("/proc/quantbench-runs")
    assert main(["run", str(config), "--out", str(out)]) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"quantbench: error: --out {out}: cannot create a run directory there")
    assert line.endswith("; choose a writable folder")


def test_a_config_that_is_not_utf8_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bench.yaml"
    config.write_bytes(b"name: \xff\xfe\n" + CONFIG.encode())
    assert main(["run", str(config), "--out", str(tmp_path)]) == 2
    assert one_error_line(capsys) == (
        f"quantbench: error: {config}: not UTF-8 text (byte 0xff at offset 6); save it as UTF-8"
    )


def run_dir_with(tmp_path: Path, stages: bytes) -> Path:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.json").write_text(json.dumps({"name": "t", "targets": [{"name": "a"}]}))
    (run_dir / "stages.jsonl").write_bytes(stages)
    return run_dir


STAGE = (
    b'{"target":"a","stage":0,"mode":"concurrency","load":1.0,"warmup_s":0.0,'
    b'"start_wall_s":0.0,"end_wall_s":1.0,"start_ns":0,"end_ns":1}\n'
)


@pytest.mark.parametrize(
    ("line", "says"),
    [
        (b'{"target": "a", "stage": "two"}\n', "not a stage record (stage: Input should be"),
        (b"\xff\xfe\x00garbage\n", "not a stage record (Invalid JSON"),
    ],
)
def test_a_corrupt_stages_line_is_one_line_naming_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: bytes, says: str
) -> None:
    run_dir = run_dir_with(tmp_path, STAGE + line)
    assert main(["report", str(run_dir)]) == 2
    message = one_error_line(capsys)
    assert message.startswith(f"quantbench: error: {run_dir / 'stages.jsonl'}:2: {says}")
    assert len(message) < 300


def test_not_a_run_directory_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(tmp_path)]) == 2
    assert one_error_line(capsys) == (
        f"quantbench: error: {tmp_path / 'run.json'}: not found; is {tmp_path} a quantbench "
        "run directory?"
    )
    newer = tmp_path / "run.json"
    newer.write_text('{"schema_version": 7}')
    assert main(["plan", str(tmp_path)]) == 2
    assert "written by a newer quantbench (run.json schema 7" in one_error_line(capsys)


def test_resume_and_a_config_together_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "bench.yaml", "--resume", str(tmp_path)]) == 2
    assert "not both" in one_error_line(capsys)
