"""The pipeline's contract with a run directory: read everything, rewrite nothing the run
wrote, and say the right thing when some stages cannot be trusted."""

from __future__ import annotations

import csv
import hashlib
import json
import re
from pathlib import Path

import pandas as pd
import pytest

from analysis.pipeline import analyze, analyze_run, load_run
from analysis.rundir import load_stages
from loadtest.gpu_records import GPU_FILE, GpuSample
from loadtest.records import STAGES_FILE, RecordWriter
from quantbench.cli import main
from tests.analysis.helpers import FakeTarget, write_run
from tests.simulated_runs import AWQ, FP16, write_simulated_run


def digests(run_dir: Path) -> dict[str, str]:
    return {
        str(path.relative_to(run_dir)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(run_dir.rglob("*"))
        if path.is_file()
    }


def test_report_leaves_every_input_file_byte_identical(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = write_run(tmp_path, [FakeTarget("a"), FakeTarget("b", quant="fp16")])
    (run_dir / "generator.jsonl").write_text('{"pid": 1, "wall_s": 1.0, "cpu_percent": 20.0}\n')
    (run_dir / "scheduled.jsonl").write_text('{"target": "a", "stage": 0, "request_id": "x"}\n')
    stages = (run_dir / STAGES_FILE).read_text().splitlines()
    stages[0] = stages[0].replace('"valid":null', '"valid":true')  # an old run's own verdict
    (run_dir / STAGES_FILE).write_text("\n".join(stages) + "\n")
    inputs = digests(run_dir)
    assert main(["report", str(run_dir)]) == 0
    assert main(["plan", str(run_dir), "--slo", "ttft_p99=1s"]) == 0
    assert main(["report", str(run_dir)]) == 0
    capsys.readouterr()
    after = digests(run_dir)
    assert {name: after[name] for name in inputs} == inputs
    derived = set(after) - set(inputs)
    for name in (
        "summary.csv",
        "result.json",
        "report.md",
        "report.html",
        "requests.parquet",
        "plan.json",
        "plan.md",
        "plots/latency_cdf.png",
        "plots/timeline.png",
    ):
        assert name in derived, name  # fmt: skip


def test_analyze_is_pure_and_write_outputs_does_the_writing(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path, [FakeTarget("a")])
    before = digests(run_dir)
    analysis = analyze(load_run(run_dir))
    assert digests(run_dir) == before  # nothing written, not even a plot
    assert analysis.summary["valid"].all() and analysis.result["stages"]
    assert analysis.report.plots == {}


def test_an_invalid_low_stage_never_makes_the_headline_say_no_target_met_the_slo(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 12's new user: stages [1, 8, 32], 1.6 requests/s per user for 10 s. The 1-user
    stage has 16 samples (< 59 for a p95, invalid); 8 and 32 users are valid and within the
    SLO. The verdict is "≥ 32 users within the SLO", and `plan` succeeds."""
    target = FakeTarget("only", ttft_ms=50.0, tpot_ms=5.0, rate_per_user=1.6, simulated=False)
    run_dir = write_run(tmp_path, [target], loads=(1, 8, 32), slo={"ttft_ms": 500, "tpot_ms": 50})
    result = analyze_run(run_dir)
    summary = pd.read_csv(run_dir / "summary.csv")
    assert list(summary["ok"]) == [16, 128, 512]
    assert list(summary["valid"]) == [False, True, True]
    first = result.headline[0]
    assert "No " not in first, first
    assert first.startswith("**only** (vllm awq) sustains the most load within the SLO")
    assert "up to 32 users" in first
    assert any(
        line.startswith("Left out of the verdict as unknown (not as failures): only at 1 user:")
        and "16 ok samples, p95 needs 59" in line
        for line in result.headline
    ), result.headline
    capsys.readouterr()
    assert main(["plan", str(run_dir), "--peak-rps", "100"]) == 0
    plan = json.loads((run_dir / "plan.json").read_text())
    assert plan["cheapest"] == "only"
    assert plan["targets"][0]["capacity"]["skipped_stages"] == [
        "1 user: invalid (16 ok samples, p95 needs 59)"
    ]


def test_a_target_without_a_valid_stage_is_not_measured_not_failed(tmp_path: Path) -> None:
    fast = FakeTarget("fast", rate_per_user=8.0)
    thin = FakeTarget("thin", rate_per_user=0.5)  # at most 80 samples... at load 16 only
    run_dir = write_run(tmp_path, [fast, thin], loads=(1, 4))
    result = analyze_run(run_dir)
    assert "Not measured (no valid stage, so no verdict): thin." in result.headline
    assert not any("Never within the SLO" in line and "thin" in line for line in result.headline)
    report = (run_dir / "report.md").read_text()
    assert "| thin (vllm awq) *(simulated)* | not measured |" in report


def test_damaged_lines_are_reported_in_one_line_each_never_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = write_run(tmp_path, [FakeTarget("a")], loads=(1, 4))
    requests = run_dir / "requests.jsonl"
    lines = requests.read_bytes().splitlines(keepends=True)
    lines.insert(30, b"\x89PNG\r\n\x1a garbage that is not JSON\n")
    requests.write_bytes(b"".join(lines))
    assert main(["report", str(run_dir)]) == 0
    captured = capsys.readouterr()
    (warning,) = captured.err.splitlines()
    assert warning.startswith("quantbench: warning: requests.jsonl: 2 corrupt lines skipped")
    assert "(lines 31, 32;" in warning  # the garbage held a \r\n: two lines of damage
    report = (run_dir / "report.md").read_text()
    assert "- requests.jsonl: 2 corrupt lines skipped (lines 31, 32;" in report

    stages = run_dir / STAGES_FILE
    stages.write_text(stages.read_text().replace('"mode":"concurrency"', '"mode":"burst"', 1))
    assert main(["report", str(run_dir)]) == 2
    (error,) = capsys.readouterr().err.splitlines()
    assert error.startswith(f"quantbench: error: {stages}:1: not a stage record (mode: ")


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        ({"ended_at": None}, "run.json has no end time: this run is still going, or was killed"),
        ({"interrupted": "SIGTERM"}, "This run was interrupted (SIGTERM) before it finished"),
    ],
    ids=["kill-9", "signal"],
)
def test_an_unfinished_run_says_so_in_its_headline(
    tmp_path: Path, edit: dict[str, object], expected: str
) -> None:
    """After a kill -9 the FP16 target may have no stage: the report must not read as if the
    run were whole ("no reference target", "the only measured target")."""
    run_dir = write_run(tmp_path, [FakeTarget("awq"), FakeTarget("fp16", quant="fp16")])
    meta = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps(meta | edit))
    result = analyze_run(run_dir)
    line = next(line for line in result.headline if expected in line)
    assert f"`quantbench run --resume {run_dir}` finishes it" in line
    assert expected in (run_dir / "report.md").read_text()


def test_a_finished_run_has_no_unfinished_note(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path, [FakeTarget("awq")])
    assert not any("--resume" in line for line in analyze_run(run_dir).headline)


_COUNTS = ["stage", "repeat", "requests", "ok", "errors", "input_tokens", "output_tokens",
           "tpot_undefined",
           "ttft_n", "tpot_n", "itl_n", "e2e_n", "ttft_all_n", "e2e_all_n",
           "gpu_count", "gpu_samples"]  # fmt: skip


def _simulated_run_with_gpu_samples(root: Path, sampled: set[str]) -> Path:
    """A closed-loop run of the simulator's engine (tests.simulated_runs) with one GPU's
    samples, every 0.5 s over the whole run, for the targets in `sampled`."""
    run_dir = write_simulated_run(
        root, "gpu", {"a": AWQ, "b": FP16},
        load={"mode": "concurrency", "stages": [2, 4], "warmup": 1.0, "stage_duration": 3.0},
    )  # fmt: skip
    stages = load_stages(run_dir)
    start, end = min(s.start_wall_s for s in stages), max(s.end_wall_s for s in stages)
    writer = RecordWriter(run_dir / GPU_FILE)
    for target in sorted(sampled):
        for i in range(int((end - start) * 2) + 3):
            wall_s = start - 0.5 + i / 2
            writer.write(
                GpuSample(wall_s=wall_s, source="dcgm", simulated=True, target=target, gpu=0,
                          power_w=300.0, energy_mj=300_000.0 * i / 2)
            )  # fmt: skip
    writer.close()
    analyze_run(run_dir)
    return run_dir


def test_summary_csv_writes_counts_as_integers_that_read_csv_reads_as_integers(
    tmp_path: Path,
) -> None:
    run_dir = _simulated_run_with_gpu_samples(tmp_path, {"a", "b"})
    summary = pd.read_csv(run_dir / "summary.csv")
    assert len(summary) == 4 and (summary["gpu_count"] == 1).all()
    assert {c: str(summary[c].dtype) for c in _COUNTS} == dict.fromkeys(_COUNTS, "int64")
    assert (summary["gpu_samples"] >= 6).all() and (summary["requests"] > 0).all()


def test_a_count_some_rows_lack_is_an_empty_cell_beside_integers(tmp_path: Path) -> None:
    run_dir = _simulated_run_with_gpu_samples(tmp_path, {"a"})
    with (run_dir / "summary.csv").open() as file:
        rows = list(csv.DictReader(file))
    cells = {(r["target"], c): r[c] for r in rows for c in _COUNTS}
    assert all(re.fullmatch(r"\d+", v) for (t, c), v in cells.items() if t == "a"), cells
    assert [r["gpu_count"] for r in rows] == ["1", "1", "", ""]
    nullable = pd.read_csv(run_dir / "summary.csv", dtype_backend="numpy_nullable")
    assert str(nullable["gpu_count"].dtype) == "Int64"
    assert nullable["gpu_count"].tolist()[:2] == [1, 1] and nullable["gpu_count"].isna()[2:].all()
