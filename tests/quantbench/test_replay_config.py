"""Bad replay and session configs: one line on stderr naming the field and the fix, exit 2,
before anything starts (no run directory)."""

from __future__ import annotations

from pathlib import Path

import pytest

from quantbench.cli import main
from tests.loadtest.traces.helpers import EXAMPLES

TRACE = EXAMPLES / "synthetic_mooncake.jsonl"
HEAD = "name: b\ntargets: [{name: s, sim: {speed: 50}}]\n"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "workload: {endpoint: completions}\nload: {mode: replay, stages: [1]}",
            "load.mode: replay needs workload.trace (the trace file to replay)",
        ),
        (
            f"workload: {{trace: {TRACE}}}\nload: {{mode: rate, stages: [1]}}",
            "workload.trace is replayed by load.mode: replay, not rate",
        ),
        (
            "workload: {trace: {file: /nope.jsonl}}\nload: {mode: replay, stages: [1]}",
            "workload.trace: /nope.jsonl: no such file",
        ),
        (
            f"workload: {{trace: {{file: {TRACE}, speedup: 0}}}}\nload: {{mode: replay}}",
            "workload.trace.speedup: Input should be greater than 0",
        ),
        (
            f"workload: {{trace: {{file: {TRACE}, start: 500s}}}}\nload: {{mode: replay}}",
            "start 500 s is past the trace's end (177.213 s)",
        ),
        (
            f"workload: {{trace: {TRACE}}}\nload: {{mode: replay, stages: [0]}}",
            "load.stages[0]: Input should be greater than 0",
        ),
        (
            f"workload: {{trace: {{file: {TRACE}, format: csv}}}}\nload: {{mode: replay}}",
            "workload.trace: format csv needs a `mapping` of its columns",
        ),
        (
            "workload: {endpoint: completions, sessions: {turns: 2}}\nload: {stages: [1]}",
            "workload: sessions send conversations: they need `endpoint: chat`",
        ),
        (
            f"workload: {{sessions: {{turns: 2}}, trace: {TRACE}}}\nload: {{stages: [1]}}",
            "workload: give `trace` or `sessions`, not both",
        ),
        (
            "workload: {sessions: {turns: 2}}\nload: {mode: rate, stages: [1]}",
            "workload.sessions run as closed-loop users (load.mode: concurrency), not rate",
        ),
        (
            "workload: {sessions: {file: bad.json}}\nload: {stages: [1]}",
            "bad.json: entry 0 has no `conversations` list (ShareGPT)",
        ),
    ],
)
def test_bad_replay_or_sessions_config_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str, expected: str
) -> None:
    (tmp_path / "bad.json").write_text('[{"nope": 1}]')
    config = tmp_path / "bench.yaml"
    config.write_text(HEAD + body + "\n")
    out = tmp_path / "runs"
    assert main(["run", str(config), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"quantbench: error: {config}:"), err
    assert expected in err[0]
    assert not out.exists() or not any(out.iterdir())
