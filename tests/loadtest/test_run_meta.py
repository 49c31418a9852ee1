"""run.json through its schema: written and read back the same, old files still load, a
newer or broken one is one clear error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtest.run_meta import SCHEMA_VERSION, RunMeta, RunMetaError, TargetMeta


def test_a_written_run_json_reads_back_equal(tmp_path: Path) -> None:
    meta = RunMeta(
        run_id="r1",
        name="bench",
        config={"timeouts": {"ttft": "2s", "total": 9}, "load": {"stages": [1, 2]}},
        targets=[TargetMeta(name="a", stack="vllm", quant="awq", simulated=True)],
        resumed_at=["2026-11-27T00:00:00+00:00"],
    )
    meta.write(tmp_path)
    data = json.loads((tmp_path / "run.json").read_text())
    assert data["schema_version"] == SCHEMA_VERSION
    again = RunMeta.read(tmp_path)
    assert again == meta
    assert again.timeouts().ttft == 2.0 and again.timeouts().total == 9.0
    assert again.load().stages == [1, 2]
    assert again.target("a") is again.targets[0] and again.target("b") is None


def test_a_run_json_from_before_the_schema_still_loads(tmp_path: Path) -> None:
    old = {  # as quantbench wrote it before run.json had a schema
        "run_id": "20261126T120000Z-bench",
        "name": "bench",
        "quantbench_version": "0.1.0",
        "versions": {"python": "3.11.7"},
        "started_at": "2026-11-26T12:00:00+00:00",
        "ended_at": None,
        "seeds": {"workload": 0},
        "config": {"slo": {"ttft_ms": 200}},
        "selected_targets": ["a"],
        "targets": [
            {"name": "a", "stack": "tgi", "quant": "gptq", "simulated": False,
             "url": "http://h:80", "server_info": None, "an_old_key": 1},
        ],
        "host": {"hostname": "h"},
        "a_key_no_longer_written": True,
    }  # fmt: skip
    (tmp_path / "run.json").write_text(json.dumps(old))
    meta = RunMeta.read(tmp_path)
    assert meta.schema_version == SCHEMA_VERSION
    assert (meta.targets[0].stack, meta.targets[0].quant, meta.targets[0].url) == (
        "tgi",
        "gptq",
        "http://h:80",
    )
    assert meta.targets[0].server_info == {} and meta.host == {"hostname": "h"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"schema_version": 99}', r"written by a newer quantbench \(run.json schema 99; this"),
        ('{"schema_version": "1"}', "schema_version '1' is not a whole number"),
        ("[1, 2]", "expected a JSON object"),
        ("{oops", "not valid JSON"),
        ('{"schema_version": 1, "colour": "red"}', r"run.json: colour: Extra inputs"),
        ('{"schema_version": 1, "targets": [{}]}', r"run.json: targets.0.name: Field required"),
    ],
)
def test_a_bad_run_json_is_one_clear_line(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "run.json").write_text(text)
    with pytest.raises(RunMetaError, match=message) as info:
        RunMeta.read(tmp_path)
    assert "\n" not in str(info.value)


def test_missing_or_not_utf8(tmp_path: Path) -> None:
    with pytest.raises(RunMetaError, match=r"not found; is .* a quantbench run directory"):
        RunMeta.read(tmp_path)
    (tmp_path / "run.json").write_bytes(b'{"name": "caf\xe9"}')
    with pytest.raises(RunMetaError, match="not valid JSON"):
        RunMeta.read(tmp_path)
