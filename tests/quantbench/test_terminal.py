"""`run` as a person sees it (issue 12.8): through a pseudo-terminal of 80 columns, rendered
by a terminal emulator (pyte) — stage lines, no leftover of the live status line, the summary
table with the invalid stage in red, the verdict, and after Ctrl-C the `--resume` hint — and
through a pipe: no colour codes and no line broken at 80 columns."""

from __future__ import annotations

import fcntl
import os
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pyte
import pytest

from tests.procs import REPO_ROOT

pytestmark = pytest.mark.slow

COLUMNS, ROWS = 80, 120

CONFIG = """
name: term
targets:
  - name: tgi
    api: tgi
    sim: {{stack: tgi, quant: awq, timing: fixed, ttft_ms: 20, itl_ms: 5,
           max_concurrent_requests: 1}}
workload: {{endpoint: completions, prompt_tokens: 8, output_tokens: 4}}
load: {{stages: [1, 3], warmup: 0.2s, stage_duration: {duration}}}
analysis: {{max_generator_cpu_percent: 100, max_loop_lag_p99_ms: 100}}
"""


def env() -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    out["TERM"] = "xterm-256color"
    return out


class Terminal:
    """`quantbench ARGS` on a pseudo-terminal of COLUMNS × ROWS, its output on a pyte screen."""

    def __init__(self, *args: str) -> None:
        self.screen = pyte.Screen(COLUMNS, ROWS)
        self.stream = pyte.ByteStream(self.screen)
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "quantbench", *args], cwd=REPO_ROOT, env=env(),
            stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
        )  # fmt: skip
        os.close(slave)
        self.master = master

    def read_until(self, done: object, deadline_s: float = 120.0) -> None:
        """Feed output to the screen until `done(text)` holds or the process has ended."""
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if callable(done) and done(self.text()):
                return
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # the other side closed: the process has ended
                    chunk = b""
                if not chunk and self.proc.poll() is not None:
                    return
                self.stream.feed(chunk)
            elif self.proc.poll() is not None and not callable(done):
                return
        raise AssertionError(f"timed out; screen:\n{self.text()}")

    def finish(self) -> int:
        self.read_until(None)
        code = self.proc.wait(timeout=30)
        os.close(self.master)
        return code

    def text(self) -> str:
        return "\n".join(line.rstrip() for line in self.screen.display).rstrip()

    def lines(self) -> list[str]:
        return self.text().splitlines()


def test_on_a_terminal_the_live_line_leaves_nothing_and_the_table_marks_invalid_stages(
    tmp_path: Path,
) -> None:
    config = tmp_path / "bench.yaml"
    config.write_text(CONFIG.format(duration="1s"))
    term = Terminal("run", str(config), "--out", str(tmp_path / "runs"))
    assert term.finish() == 0, term.text()
    lines = term.lines()
    stage_lines = [x for x in lines if ": stage " in x and "/2 · " in x]
    assert stage_lines == [
        "  tgi: stage 1/2 · 1 user · 1 s (longer until 59 ok samples, at most 600 s)",
        "  tgi: stage 2/2 · 3 users · 1 s (longer until 59 ok samples, at most 600 s)",
    ]
    # The live status line ("… ok samples · … requests · …") was redrawn in place and then
    # erased: none of it is left on screen, not even a fragment after a shorter line.
    assert not [x for x in lines if "requests ·" in x or "ok samples ·" in x], term.text()
    header = next(i for i, x in enumerate(lines) if x.startswith("target") and "valid" in x)
    rows = lines[header + 1 : header + 3]
    assert rows[0].split()[:3] == ["tgi", "1", "1"] and rows[0].split()[-1] == "yes"
    assert rows[1].split()[:3] == ["tgi", "2", "3"] and rows[1].split()[-1] == "no"
    invalid_row = term.screen.buffer[header + 2]
    assert {invalid_row[x].fg for x in range(len(rows[1])) if rows[1][x] != " "} == {"red"}
    assert any(x.startswith("  tgi stage 2 (3 users): error rate") for x in lines)
    assert "Verdict" in lines
    assert all(len(x) <= COLUMNS for x in lines)


def test_ctrl_c_clears_the_live_line_and_ends_with_the_resume_hint(tmp_path: Path) -> None:
    config = tmp_path / "bench.yaml"
    config.write_text(CONFIG.format(duration="60s"))
    term = Terminal("run", str(config), "--out", str(tmp_path / "runs"))
    term.read_until(lambda text: "ok samples ·" in text)  # the live line is showing
    os.killpg(term.proc.pid, signal.SIGINT)  # what Ctrl-C sends to the foreground group
    assert term.finish() == 2
    (run_dir,) = (tmp_path / "runs").iterdir()
    text = term.text()
    unwrapped = " ".join("".join(term.screen.display).split())  # the terminal wraps at 80
    assert f"`quantbench run --resume {run_dir}`" in unwrapped, text
    assert "ok samples ·" not in text


def test_through_a_pipe_nothing_wraps_and_nothing_is_coloured(tmp_path: Path) -> None:
    config = tmp_path / "bench.yaml"
    config.write_text(CONFIG.format(duration="1s"))
    out = tmp_path / ("a-folder-with-a-long-name-" * 3) / "runs"
    result = subprocess.run(
        [sys.executable, "-m", "quantbench", "run", str(config), "--out", str(out)],
        cwd=REPO_ROOT, env=env(), capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (run_dir,) = out.iterdir()
    lines = result.stdout.splitlines()
    assert len(str(run_dir)) > 80 and lines[-1] == str(run_dir)
    assert "\x1b[" not in result.stdout
    assert any(x.startswith("target") and x.rstrip().endswith("valid") for x in lines)
    assert [x for x in lines if ": stage " in x and "/2 · " in x] == [
        "  tgi: stage 1/2 · 1 user · 1 s (longer until 59 ok samples, at most 600 s)",
        "  tgi: stage 2/2 · 3 users · 1 s (longer until 59 ok samples, at most 600 s)",
    ]
    assert any(x.startswith("report:  ") and x.endswith("report.md") for x in lines)
    assert "ok samples ·" not in result.stdout  # no live line in a pipe
