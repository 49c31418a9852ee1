"""`quantbench trace describe` as users run it: tables, plots, exit 2 with file:line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from loadtest.traces import describe_trace, read_trace
from quantbench.cli import main
from tests.loadtest.traces.helpers import EXAMPLES
from tests.terminal import on_a_terminal

MOONCAKE = EXAMPLES / "synthetic_mooncake.jsonl"


def test_describe_prints_tables_and_writes_plots(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "plots"
    assert main(["trace", "describe", str(MOONCAKE), "--stages", "1,2,4", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.strip().splitlines()[-1] == str(out)
    summary = describe_trace(read_trace(MOONCAKE)).summary
    assert f"{summary.requests:,} requests" in printed
    assert re.search(r"│ input\s+│\s+" + f"{summary.input_tokens.mean:,.0f}", printed)
    assert f"{summary.prefix.reused_token_share:.1%}" in printed  # type: ignore[union-attr]
    assert "Growth sweep" in printed and re.search(r"│\s+2 │\s+4 │", printed)
    for name in ("lengths.png", "joint.png", "arrivals.png"):
        data = (out / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 10_000, name
    assert json.loads((out / "summary.json").read_text()) == summary.model_dump(mode="json")


def test_controls_change_what_is_described(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["trace", "describe", str(MOONCAKE), "--start", "30s", "--duration", "1m"]
    assert main([*args, "--speedup", "2", "--sample", "0.5", "--seed", "3"]) == 0
    printed = capsys.readouterr().out
    assert "over 30.0 s (after window, sample and speedup)" in printed


@pytest.mark.parametrize(
    ("name", "text", "flags", "where"),
    [
        ("t.jsonl", '{"timestamp": 0, "input_length": 3, "output_length": 1}\n'
         '{"timestamp": 5, "input_length": 3, "output_length": -1}\n', [],
         ':2: "output_length" is -1'),
        ("b.csv", "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
         "1,ChatGPT,5,x,5,API log\n", [], ':2: "Response tokens" is \'x\''),
        ("a.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,,4\n",
         [], ':2: no "ContextTokens"'),
        ("g.csv", "when,in,out\n1,2,3\nlater,2,3\n",
         ["--map", "timestamp=when,input_tokens=in,output_tokens=out"],
         ":3: \"when\" is 'later', not a number of seconds"),
    ],
)  # fmt: skip
def test_a_bad_row_exits_2_with_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    text: str,
    flags: list[str],
    where: str,
) -> None:
    path = tmp_path / name
    path.write_text(text)
    assert main(["trace", "describe", str(path), *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"quantbench: error: {path}{where}"), err
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--speedup", "0"], "--speedup: Input should be greater than 0"),
        (["--sample", "2"], "--sample: Input should be less than or equal to 1"),
        (["--duration", "soon"], "--duration: Value error, 'soon' is not a duration"),
        (["--map", "timestamp"], "--map: 'timestamp' is not FIELD=COLUMN"),
        (["--format", "csv", "--map", "timestamp=t"], "--map input-tokens: Field required"),
        (["--stages", "1,0"], "--stages: rate multipliers are numbers above 0"),
        (["--start", "1h"], "start 3600 s is past the trace's end"),
    ],
)
def test_bad_flags_exit_2(
    capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    assert main(["trace", "describe", str(MOONCAKE), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_on_a_terminal(tmp_path: Path) -> None:
    """Through a pseudo-terminal, as a person sees it: the tables, no traceback."""
    code, screen = on_a_terminal(["trace", "describe", str(MOONCAKE)], timeout=120)
    assert code == 0, screen
    assert "Token lengths (per request)" in screen and "inter-arrival CV" in screen
    assert "Traceback" not in screen
