"""Reading traces: columns and units per format, and one `file:line: what` per bad row."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from loadtest.traces import ColumnMapping, TraceError, read_trace
from tests.loadtest.traces.helpers import EXAMPLES, mooncake_row, write_jsonl


def test_mooncake_columns_sessions_and_hash_ids(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(
        '{"timestamp": 1000, "input_length": 700, "output_length": 5, "hash_ids": [1, 2],'
        ' "session_id": "a", "other": {"ignored": true}}\n'
        "\n"
        '{"timestamp": 2500, "input_length": 30, "output_length": 0, "hash_ids": [3]}\n'
        '{"timestamp": 4000, "input_length": 900, "output_length": 7, "session_id": "a"}\n'
    )
    trace = read_trace(path)
    assert trace.format == "mooncake"
    assert trace.offset_s.tolist() == [0.0, 1.5, 3.0]  # ms from the first request, in s
    assert trace.input_tokens.tolist() == [700, 30, 900]
    assert trace.output_tokens.tolist() == [5, 0, 7]
    assert trace.row.tolist() == [0, 1, 2]
    assert trace.session is not None and trace.session.tolist() == [0, -1, 0]
    assert trace.hash_ids is not None and trace.hash_ids.to_pylist() == [[1, 2], [3], None]
    assert trace.span_s == 3.0 and trace.out_of_order == 0


def test_integer_session_ids_are_read_too(tmp_path: Path) -> None:
    rows = [{**mooncake_row(i, 1, 1), "session_id": 7 - i % 2} for i in range(4)]
    trace = read_trace(write_jsonl(tmp_path / "t.jsonl", rows))
    assert trace.session is not None and trace.session.tolist() == [0, 1, 0, 1]


def test_out_of_order_rows_are_sorted_stably_and_counted(tmp_path: Path) -> None:
    times = [0, 3000, 1000, 3000, 2000, 5000]
    rows = [mooncake_row(ms, 10 + i, 1) for i, ms in enumerate(times)]
    trace = read_trace(write_jsonl(tmp_path / "t.jsonl", rows))
    assert trace.offset_s.tolist() == [0, 1, 2, 3, 3, 5]
    assert trace.row.tolist() == [0, 2, 4, 1, 3, 5]  # equal timestamps keep file order
    assert trace.input_tokens.tolist() == [10, 12, 14, 11, 13, 15]
    assert trace.out_of_order == 2


@pytest.mark.parametrize(
    ("name", "format"),
    [
        ("synthetic_mooncake.jsonl", "mooncake"),
        ("burstgpt_sample.csv", "burstgpt"),
        ("azure_sample.csv", "azure"),
    ],
)
def test_shipped_examples_are_told_apart_and_read_whole(name: str, format: str) -> None:
    path = EXAMPLES / name
    trace = read_trace(path)
    assert trace.format == format
    if format == "mooncake":
        frame = pd.read_json(path, lines=True)
        times = frame["timestamp"] / 1000
        inputs, outputs = frame["input_length"], frame["output_length"]
    else:
        frame = pd.read_csv(path)
        if format == "burstgpt":
            times = frame["Timestamp"]
            inputs, outputs = frame["Request tokens"], frame["Response tokens"]
        else:
            times = pd.to_datetime(frame["TIMESTAMP"]).astype("int64") / 1e9
            inputs, outputs = frame["ContextTokens"], frame["GeneratedTokens"]
    assert len(trace) == len(frame)
    np.testing.assert_allclose(trace.offset_s, times - times.min(), atol=1e-6)
    assert trace.input_tokens.tolist() == inputs.tolist()
    assert trace.output_tokens.tolist() == outputs.tolist()


def test_azure_week_files_with_utc_offsets_mix_with_naive_times(tmp_path: Path) -> None:
    path = tmp_path / "azure.csv"
    path.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2024-05-10 00:00:00.009930+00:00,10,2\n"
        "2024-05-10 00:00:01,11,3\n"
        "2024-05-10 00:00:02.5000000,12,4\n"
    )
    trace = read_trace(path)
    np.testing.assert_allclose(trace.offset_s, [0, 0.99007, 2.49007], atol=1e-9)


def test_generic_mapping_in_csv_and_jsonl(tmp_path: Path) -> None:
    csv = tmp_path / "calls.csv"
    csv.write_text("ts_ms,user,prompt,completion\n1000,u1,100,10\n1250,u2,200,20\n1500,u1,300,30\n")
    mapping = ColumnMapping(
        timestamp="ts_ms",
        timestamp_unit="ms",
        input_tokens="prompt",
        output_tokens="completion",
        session="user",
    )
    trace = read_trace(csv, mapping=mapping)
    assert trace.format == "csv" and trace.offset_s.tolist() == [0, 0.25, 0.5]
    assert trace.session is not None and trace.session.tolist() == [0, 1, 0]
    rows = [{"t": f"2026-01-01T00:00:0{i}", "in": 5, "out": 6, "blocks": [i]} for i in range(3)]
    jsonl = write_jsonl(tmp_path / "calls.jsonl", rows)
    mapping = ColumnMapping(
        timestamp="t",
        timestamp_unit="datetime",
        input_tokens="in",
        output_tokens="out",
        hash_ids="blocks",
    )
    trace = read_trace(jsonl, "jsonl", mapping)
    assert trace.offset_s.tolist() == [0, 1, 2]
    assert trace.hash_ids is not None and trace.hash_ids.to_pylist() == [[0], [1], [2]]


_GENERIC = ColumnMapping(timestamp="t", input_tokens="in", output_tokens="out")

BAD_ROWS = [
    # (format, suffix, mapping, text, where and what)
    ("mooncake", ".jsonl", None,
     '{"timestamp": 0, "input_length": 5, "output_length": 1}\n'
     '{"timestamp": 1, "input_length": -5, "output_length": 1}\n',
     r':2: "input_length" is -5; a token count cannot be negative$'),
    ("mooncake", ".jsonl", None,
     '{"timestamp": 0, "input_length": 5, "output_length": 1}\n\n{"timestamp": 1, "input_len',
     r":3: not JSON \("),
    ("mooncake", ".jsonl", None,
     '{"timestamp": "soon", "input_length": 5, "output_length": 1}\n',
     r':1: "timestamp" is \'soon\', not a number of milliseconds$'),
    ("mooncake", ".jsonl", None,
     '{"timestamp": 0, "output_length": 1}\n', r':1: no "input_length"$'),
    ("mooncake", ".jsonl", None,
     '{"timestamp": 0, "input_length": 5, "output_length": 1, "hash_ids": [1, 2.5]}\n',
     r':1: "hash_ids" must be a list of integers'),
    ("burstgpt", ".csv", None,
     "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
     "5,ChatGPT,472,18,490,Conversation log\n6,ChatGPT,12.5,18,30,API log\n",
     r':3: "Request tokens" is 12.5; a token count is a whole number$'),
    ("burstgpt", ".csv", None,
     "Timestamp,Model,Response tokens\n5,ChatGPT,18\n",
     r':1: no column "Request tokens" \(burstgpt needs Timestamp, Request tokens, Response'),
    ("burstgpt", ".csv", None,
     "Timestamp,Model,Request tokens,Response tokens\n5,ChatGPT,1,18\n\n6,ChatGPT,1\n",
     r":4: 3 fields where the header has 4$"),
    ("azure", ".csv", None,
     "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,374,44\n"
     "16/11/2023 noon,396,109\n",
     r":3: \"TIMESTAMP\" is '16/11/2023 noon', not a date and time \(ISO 8601\)$"),
    ("azure", ".csv", None,
     "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,374,-44\n",
     r':2: "GeneratedTokens" is -44; a token count cannot be negative$'),
    ("csv", ".csv", _GENERIC, "t,in,out\n1,2,3\n2,,3\n", r':3: no "in"$'),
    ("jsonl", ".jsonl", _GENERIC, '{"t": 1, "in": 2, "out": 3}\n[1, 2]\n',
     r":2: not a JSON object"),
]  # fmt: skip


@pytest.mark.parametrize(("format", "suffix", "mapping", "text", "expected"), BAD_ROWS)
def test_a_bad_row_is_one_line_naming_file_and_line(
    tmp_path: Path,
    format: str,
    suffix: str,
    mapping: ColumnMapping | None,
    text: str,
    expected: str,
) -> None:
    path = tmp_path / f"trace{suffix}"
    path.write_text(text)
    with pytest.raises(TraceError) as caught:
        read_trace(path, format, mapping)
    message = str(caught.value)
    assert "\n" not in message
    assert re.search("^" + re.escape(str(path)) + expected, message), message


def test_a_bad_row_deep_in_a_multi_batch_file_names_its_line(tmp_path: Path) -> None:
    rows = [mooncake_row(i * 10, 100, 10, [i, i + 1, i + 2]) for i in range(60_000)]
    rows[57_321]["output_length"] = "many"
    path = write_jsonl(tmp_path / "big.jsonl", rows)
    assert path.stat().st_size > 4 << 20  # more than one 4 MiB batch
    with pytest.raises(TraceError, match=r":57322: \"output_length\" is 'many', not a token"):
        read_trace(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", r": the file is empty$"),
        ("\n\n", r": the file is empty$"),
        ("when,what\n1,2\n", r":1: cannot tell the trace format"),
    ],
)
def test_unreadable_files(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "t.txt"
    path.write_text(text)
    with pytest.raises(TraceError, match=expected):
        read_trace(path)
    with pytest.raises(TraceError, match=r"nowhere.jsonl: no such file"):
        read_trace(tmp_path / "nowhere.jsonl")
