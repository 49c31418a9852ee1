import json
from pathlib import Path

import pandas as pd
import pytest

from analysis.config import SloConfig
from analysis.rundir import (
    RunDirError,
    load_plan,
    load_requests,
    load_run_meta,
    load_stages,
    record_schema,
    write_parquet,
)
from analysis.summary import TargetInfo, summarize
from loadtest.records import REQUESTS_FILE, RequestRecord
from tests.analysis.helpers import FakeTarget, write_run


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return write_run(tmp_path, [FakeTarget("a"), FakeTarget("b", tpot_ms=20.0)], loads=(1, 2))


def test_the_arrow_schema_follows_the_record_model() -> None:
    schema = record_schema()
    assert schema.names == list(RequestRecord.model_fields)
    assert str(schema.field("itl_ms").type) == "list<item: double>"
    assert str(schema.field("end_ns").type) == "int64"
    assert str(schema.field("outcome").type) == "string"


def test_arrow_loading_gives_the_same_summary_as_plain_json(run_dir: Path) -> None:
    lines = (run_dir / REQUESTS_FILE).read_text().splitlines()
    plain = pd.DataFrame([json.loads(line) for line in lines])
    loaded = load_requests(run_dir)
    assert len(loaded) == len(plain) and list(loaded.columns) == list(RequestRecord.model_fields)
    targets = {t: TargetInfo(t, "vllm", "awq", True) for t in ("a", "b")}
    stages = load_stages(run_dir)
    fast = summarize(loaded, stages, targets, SloConfig())
    slow = summarize(plain, stages, targets, SloConfig())
    pd.testing.assert_frame_equal(fast, slow)
    assert fast["itl_p50_ms"].tolist() == pytest.approx([11.25, 12.5, 22.5, 25.0])


def test_a_partial_last_line_keeps_every_complete_record(run_dir: Path) -> None:
    path = run_dir / REQUESTS_FILE
    whole = len(path.read_text().splitlines())
    with path.open("a") as out:
        out.write('{"target": "a", "stage": 0, "mo')
    assert len(load_requests(run_dir)) == whole


def test_a_current_parquet_is_read_instead_of_the_json_lines(run_dir: Path) -> None:
    frame = load_requests(run_dir)
    write_parquet(run_dir, frame.head(5))  # stamped with the JSON lines' current size
    assert len(load_requests(run_dir)) == 5  # the parquet, not the JSON lines
    jsonl = run_dir / REQUESTS_FILE
    jsonl.write_text(jsonl.read_text() + jsonl.read_text().splitlines(keepends=True)[0])
    assert len(load_requests(run_dir)) == len(frame) + 1  # appended since: JSON lines again


def test_no_records_is_an_empty_frame_with_every_column(tmp_path: Path) -> None:
    frame = load_requests(tmp_path)
    assert frame.empty and list(frame.columns) == list(RequestRecord.model_fields)


def test_unreadable_files_are_run_dir_errors(tmp_path: Path) -> None:
    with pytest.raises(RunDirError, match=r"not found; is .* a quantbench run directory"):
        load_run_meta(tmp_path)
    (tmp_path / "run.json").write_text("{oops")
    with pytest.raises(RunDirError, match="not valid JSON"):
        load_run_meta(tmp_path)
    assert load_plan(tmp_path) is None
    (tmp_path / "plan.json").write_text("[1]")
    with pytest.raises(RunDirError, match="rerun quantbench plan"):
        load_plan(tmp_path)
