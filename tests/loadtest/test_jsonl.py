import json
from pathlib import Path

from loadtest.jsonl import JsonlFollower, read_jsonl
from loadtest.records import StageRecord


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_a_torn_last_line_is_dropped_quietly(tmp_path: Path) -> None:
    path = write(tmp_path / "x.jsonl", b'{"a": 1}\n{"a": 2}\n{"a": 3, "b"')
    lines = read_jsonl(path)
    assert lines.rows == [{"a": 1}, {"a": 2}]
    assert lines.torn and lines.corrupt == [] and lines.note() is None


def test_a_complete_last_line_without_its_newline_is_kept(tmp_path: Path) -> None:
    lines = read_jsonl(write(tmp_path / "x.jsonl", b'{"a": 1}\n{"a": 2}'))
    assert lines.rows == [{"a": 1}, {"a": 2}] and not lines.torn


def test_corrupt_lines_in_the_middle_are_counted_with_their_numbers(tmp_path: Path) -> None:
    data = b'{"a": 1}\n{oops\n\n{"a": 3}\n\xff\xfe\x00garbage\n{"a": 5}\n'
    lines = read_jsonl(write(tmp_path / "requests.jsonl", data))
    assert lines.rows == [{"a": 1}, {"a": 3}, {"a": 5}]
    assert lines.numbers == [1, 4, 6]
    assert lines.corrupt == [2, 5]  # the blank line 3 is neither a row nor damage
    note = lines.note()
    assert note is not None and note.startswith("requests.jsonl: 2 corrupt lines skipped")
    assert "(lines 2, 5;" in note and "\n" not in note


def test_a_model_validates_each_line_and_names_the_field(tmp_path: Path) -> None:
    good = StageRecord(
        target="t", stage=0, mode="concurrency", load=1, warmup_s=0,
        start_wall_s=0, end_wall_s=1, start_ns=0, end_ns=1,
    ).model_dump_json()  # fmt: skip
    bad = json.dumps({**json.loads(good), "end_ns": "soon"})
    path = write(tmp_path / "stages.jsonl", f"{good}\n{bad}\n{good}\n".encode())
    lines = read_jsonl(path, StageRecord.model_validate_json)
    assert [s.stage for s in lines.rows] == [0, 0] and lines.corrupt == [2]
    assert lines.first_error is not None and lines.first_error.startswith("end_ns: ")
    assert "\n" not in lines.first_error


def test_a_missing_file_reads_as_empty(tmp_path: Path) -> None:
    lines = read_jsonl(tmp_path / "absent.jsonl")
    assert lines.rows == [] and lines.corrupt == [] and not lines.torn


def test_a_follower_reads_only_new_complete_lines(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    path.write_bytes(b'{"old": 1}\n')
    follow = JsonlFollower(path, from_end=True)
    assert follow.read() == []
    with path.open("ab") as sink:
        sink.write(b'{"a": 1}\n{"b": ')  # the writer is mid-line
        sink.flush()
        assert follow.read() == [{"a": 1}]
        sink.write(b"2}\nnot json\n")
    assert follow.read() == [{"b": 2}] and follow.corrupt == 1
    assert JsonlFollower(path).read()[0] == {"old": 1}
