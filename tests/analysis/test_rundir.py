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
    parquet_is_current,
    read_requests,
    record_schema,
    write_parquet,
)
from analysis.summary import TargetInfo, summarize
from loadtest.records import REQUESTS_FILE, STAGES_FILE, RequestRecord
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


def test_a_corrupt_line_in_the_middle_is_reported_with_its_number(run_dir: Path) -> None:
    path = run_dir / REQUESTS_FILE
    lines = path.read_bytes().splitlines(keepends=True)
    damaged = [*lines[:10], b'{"target": "a", "stage": 0, oops}\n', *lines[10:20]]
    damaged += [b"\x00\xff\xfe binary garbage \x9c\n", *lines[20:]]
    path.write_bytes(b"".join(damaged))
    frame, problems = read_requests(run_dir)
    assert len(frame) == len(lines)  # every good record kept
    (note,) = problems
    assert note.startswith("requests.jsonl: 2 corrupt lines skipped (lines 11, 22;"), note


def test_a_corrupt_stage_line_is_one_line_naming_file_line_and_field(run_dir: Path) -> None:
    path = run_dir / STAGES_FILE
    lines = path.read_text().splitlines()
    lines[1] = lines[1].replace('"end_ns":', '"end_nsx":')
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(RunDirError) as caught:
        load_stages(run_dir)
    message = str(caught.value)
    assert message.startswith(f"{path}:2: not a stage record (")
    assert "\n" not in message and "pydantic" not in message
    path.write_text("\n".join(lines[:1]) + '\n{"target": "a", "sta')  # torn last line: fine
    assert len(load_stages(run_dir)) == 1


def test_requests_parquet_opens_with_default_arguments_everywhere(run_dir: Path) -> None:
    import duckdb
    import pyarrow.parquet as pq

    frame = load_requests(run_dir)
    path = write_parquet(run_dir, frame)
    plain = pd.read_parquet(path)  # pandas 3 + pyarrow: no ArrowDtype metadata to trip on
    assert len(plain) == len(frame) and list(plain.columns) == list(RequestRecord.model_fields)
    assert list(plain["itl_ms"].iloc[0]) == pytest.approx(list(frame["itl_ms"].iloc[0]))
    table = pq.read_table(path)
    assert table.schema.equals(record_schema(), check_metadata=False)
    assert b"pandas" not in (table.schema.metadata or {})
    ((count, mean_ttft),) = duckdb.sql(f"SELECT count(*), avg(ttft_ms) FROM '{path}'").fetchall()
    assert count == len(frame) and mean_ttft == pytest.approx(frame["ttft_ms"].mean())


def test_an_older_parquet_with_pandas_metadata_is_replaced(run_dir: Path) -> None:
    frame = load_requests(run_dir)
    path = run_dir / "requests.parquet"
    frame.to_parquet(path)  # as quantbench 0.1 wrote it: pandas metadata, unreadable by pandas 3
    assert not parquet_is_current(run_dir)
    write_parquet(run_dir, frame)
    assert parquet_is_current(run_dir) and len(pd.read_parquet(path)) == len(frame)


@pytest.mark.parametrize("parquet", [False, True])
def test_reading_some_columns_gives_the_same_values_and_nulls_elsewhere(
    run_dir: Path, parquet: bool
) -> None:
    whole = read_requests(run_dir)[0]
    if parquet:
        write_parquet(run_dir, whole)
    some = read_requests(run_dir, ["target", "stage", "tpot_ms", "itl_ms"])[0]
    assert list(some.columns) == list(whole.columns)
    pd.testing.assert_series_equal(some["tpot_ms"], whole["tpot_ms"])
    assert some["itl_ms"].tolist() == whole["itl_ms"].tolist()
    assert some["request_id"].isna().all() and some["ttft_ms"].isna().all()
