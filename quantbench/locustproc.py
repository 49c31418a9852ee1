"""Running one target's stages in a Locust process and following its progress.

Locust runs as `python -m locust -f loadtest/locustfile.py --headless ...` — the same file a
user can run by hand — with a `LocustSettings` JSON. Progress is read from the records it
appends to requests.jsonl, so the CLI never imports Locust (or gevent's monkey-patching).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import loadtest
from loadtest.config import LocustSettings
from loadtest.records import REQUESTS_FILE
from quantbench.errors import HarnessError

__all__ = ["LocustProgress", "locust_command", "run_locust"]

LOCUSTFILE = Path(loadtest.__file__).resolve().parent / "locustfile.py"
_POLL_S = 0.5


@dataclass
class LocustProgress:
    elapsed_s: float = 0.0
    requests: int = 0
    errors: int = 0


def locust_command(
    settings_file: Path, host: str, csv_prefix: Path, stop_timeout_s: float, processes: int = 1
) -> list[str]:
    extra = ["--processes", str(processes)] if processes > 1 else []
    return [
        sys.executable, "-m", "locust",
        "-f", str(LOCUSTFILE),
        "--headless",
        "--host", host,
        "--qb-settings", str(settings_file),
        "--csv", str(csv_prefix),
        "--only-summary",
        "--stop-timeout", f"{stop_timeout_s:g}",
        "--exit-code-on-error", "0",
        "--loglevel", "WARNING",
        *extra,
    ]  # fmt: skip


class _Tail:
    """Counts the records appended to requests.jsonl for one target since the run began."""

    def __init__(self, path: Path, target: str) -> None:
        self._path = path
        self._target = target
        self._offset = path.stat().st_size if path.exists() else 0
        self._partial = b""
        self.requests = 0
        self.errors = 0

    def poll(self) -> None:
        if not self._path.exists():
            return
        with self._path.open("rb") as handle:
            handle.seek(self._offset)
            chunk = handle.read()
        self._offset += len(chunk)
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            record = json.loads(line)
            if record.get("target") == self._target:
                self.requests += 1
                self.errors += record.get("outcome") != "ok"


def run_locust(
    settings: LocustSettings,
    host: str,
    on_progress: Callable[[LocustProgress], None],
) -> None:
    """Run all stages of one target; raise HarnessError if Locust fails."""
    run_dir = settings.run_dir
    locust_dir = run_dir / "locust"
    locust_dir.mkdir(parents=True, exist_ok=True)
    name = settings.endpoint.name
    settings_file = locust_dir / f"{name}.settings.json"
    settings_file.write_text(settings.model_dump_json(indent=2))
    log = locust_dir / f"{name}.log"
    stop_timeout = settings.load.drain_timeout + 5.0  # the drain, and a margin
    command = locust_command(
        settings_file, host, locust_dir / name, stop_timeout, settings.load.processes
    )
    tail = _Tail(run_dir / REQUESTS_FILE, name)
    started = time.monotonic()
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    try:
        while process.poll() is None:
            time.sleep(_POLL_S)
            tail.poll()
            on_progress(LocustProgress(time.monotonic() - started, tail.requests, tail.errors))
    except BaseException:
        process.terminate()
        process.wait()
        raise
    tail.poll()
    on_progress(LocustProgress(time.monotonic() - started, tail.requests, tail.errors))
    if process.returncode != 0:
        lines = log.read_text(errors="replace").strip().splitlines() or ["(no output)"]
        raise HarnessError(
            f"target {name}: Locust exited with code {process.returncode}: {lines[-1]} (log: {log})"
        )
