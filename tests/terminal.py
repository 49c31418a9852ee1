"""Run `python -m quantbench ...` on a pseudo-terminal, as a person sees it."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
import threading
from pathlib import Path

__all__ = ["on_a_terminal"]

ROOT = Path(__file__).resolve().parents[1]


def on_a_terminal(args: list[str], *, columns: int = 100, timeout: float = 300) -> tuple[int, str]:
    """The exit code and the screen's text (colours stripped) of one command. The terminal is
    drained while the command runs: a full pty buffer would block it."""
    controller, terminal = pty.openpty()
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=read)
    reader.start()
    done = subprocess.run(
        [sys.executable, "-m", "quantbench", *args],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": str(columns), "PYTHONPATH": str(ROOT)},
        timeout=timeout,
        check=False,
    )
    os.close(terminal)
    reader.join(timeout=30)
    os.close(controller)
    return done.returncode, re.sub(r"\x1b\[[0-9;]*m", "", b"".join(chunks).decode())
