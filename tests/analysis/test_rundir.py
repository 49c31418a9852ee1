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
from loadtest.records import REQUESTS_FILE, STAGES_FILE, Outcome, RecordWriter, RequestRecord
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


def _every_kind_of_record(run_dir: Path) -> None:
    """requests.jsonl as the generator writes it (`RecordWriter`): an open-loop stage at a
    fractional rate with every optional field filled, and its failures (no response, a 503)."""
    writer = RecordWriter(run_dir / REQUESTS_FILE)
    for seq in range(6):
        sent = 1_000_000 * seq
        fail = seq % 3  # 0 ok, 1 connect error, 2 HTTP 503
        writer.write(
            RequestRecord(
                target="a", stage=1, mode="rate", load=0.5 + seq % 2, user=seq, seq=seq,
                request_id=f"r{seq}", trace_row=seq, session=seq // 2, turn=seq % 2,
                outcome=[Outcome.OK, Outcome.CONNECT_ERROR, Outcome.HTTP_ERROR][fail],
                http_status=[200, None, 503][fail],
                error=[None, "[Errno 111] Connection refused", "503 overloaded"][fail],
                wall_sent_s=1.8e9 + seq / 7, scheduled_ns=sent, sent_ns=sent + 1234,
                first_byte_ns=sent + 5_000 if fail != 1 else None,
                first_token_ns=sent + 9_000 if fail == 0 else None,
                last_token_ns=sent + 90_000 if fail == 0 else None, end_ns=sent + 91_000,
                prompt_tokens=100 + seq if fail == 0 else None, output_tokens=10 * (fail == 0),
                token_count_source="usage", events=9 * (fail == 0), schedule_lag_ms=1.234,
                read_lag_ms=0.25 + seq if fail == 0 else None,
                ttft_ms=9.25 if fail == 0 else None, tpot_ms=9.125 if fail == 0 else None,
                e2e_ms=91.5 + seq, itl_ms=[9.5, 8.75] if fail == 0 else [],
            )
        )  # fmt: skip
    writer.close()


def test_both_request_files_read_with_default_pandas_arguments_give_the_same_dtypes(
    tmp_path: Path,
) -> None:
    _every_kind_of_record(tmp_path)
    path = write_parquet(tmp_path, load_requests(tmp_path))
    parquet = pd.read_parquet(path)
    lines = pd.read_json(tmp_path / REQUESTS_FILE, lines=True)
    assert list(parquet.columns) == list(RequestRecord.model_fields)
    assert set(lines.columns) == set(parquet.columns)
    filled = [c for c in parquet.columns if parquet[c].notna().any()]
    assert filled == list(parquet.columns), "the fixture leaves no column empty"
    differ = {c: (lines[c].dtype, parquet[c].dtype) for c in filled}
    assert {c: pair for c, pair in differ.items() if pair[0] != pair[1]} == {}
    assert parquet["load"].dtype == float and parquet["error"].dtype == "str"
    assert parquet["http_status"].tolist()[:3] == pytest.approx(
        [200.0, float("nan"), 503.0], nan_ok=True
    )


def test_whole_number_floats_are_where_pandas_json_inference_differs(tmp_path: Path) -> None:
    """docs/data-files.md: read with defaults, the JSON lines make a float column whose
    values are all whole numbers (a closed-loop run's `load`) int64; the parquet file keeps
    the record's float, with the same values."""
    run_dir = write_run(tmp_path, [FakeTarget("a")], loads=(1, 2))
    path = write_parquet(run_dir, load_requests(run_dir))
    parquet = pd.read_parquet(path)
    lines = pd.read_json(run_dir / REQUESTS_FILE, lines=True)
    assert (lines["load"].dtype, parquet["load"].dtype) == ("int64", "float64")
    assert lines["load"].tolist() == parquet["load"].tolist()
