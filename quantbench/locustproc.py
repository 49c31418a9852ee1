"""Running one target's stages in a Locust process and following its progress.

Locust runs as `python -m locust -f loadtest/locustfile.py --headless ...` — the same file a
user can run by hand — with a `LocustSettings` JSON. Progress is read from the records it
appends to requests.jsonl, so the CLI never imports Locust (or gevent's monkey-patching).
The same reading notices a target that went down (nothing but connection failures for
`timeouts.down`): Locust is stopped and `TargetDown` raised, instead of hammering a closed
port for the rest of the plan.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import loadtest
from loadtest.config import LocustSettings
from loadtest.records import REQUESTS_FILE
from quantbench.children import spawn
from quantbench.errors import HarnessError
from quantbench.failures import DownWatch

__all__ = ["LocustProgress", "TargetDown", "locust_command", "run_locust"]

LOCUSTFILE = Path(loadtest.__file__).resolve().parent / "locustfile.py"
_POLL_S = 0.5
_STOP_GRACE_S = 15.0  # Locust writes `cancelled` for what is in flight and closes its stage


@dataclass
class LocustProgress:
    elapsed_s: float = 0.0
    requests: int = 0
    errors: int = 0


class TargetDown(HarnessError):
    """The target stopped accepting connections mid-run; its remaining stages were skipped."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def locust_command(
    settings_file: Path, host: str, csv_prefix: Path, stop_timeout_s: float, processes: int = 1
) -> list[str]:
    # Several processes: a master and its workers on loopback (Locust's master would listen
    # on every interface), on a free port (two runs on one host must not share 5557).
    port = str(_free_port()) if processes > 1 else ""
    extra = ["--processes", str(processes), "--master-bind-host", "127.0.0.1",
             "--master-bind-port", port, "--master-port", port]  # fmt: skip
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
        *(extra if processes > 1 else []),
    ]  # fmt: skip


class _Tail:
    """Reads the records appended to requests.jsonl for one target since the run began."""

    def __init__(self, path: Path, target: str, watch: DownWatch) -> None:
        self._path = path
        self._target = target
        self._watch = watch
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
            try:
                record = json.loads(line)
            except ValueError:
                continue  # not a record (the analysis reports such lines)
            if not isinstance(record, dict) or record.get("target") != self._target:
                continue
            self.requests += 1
            self.errors += record.get("outcome") != "ok"
            self._watch.feed(str(record.get("outcome")), record.get("error"))


def run_locust(
    settings: LocustSettings,
    host: str,
    on_progress: Callable[[LocustProgress], None],
    keep_fds: tuple[int, ...] = (),
) -> None:
    """Run all stages of one target; raise TargetDown if it went down, HarnessError if
    Locust failed. `keep_fds` stay open in Locust (the run directory's lock)."""
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
    watch = DownWatch(settings.timeouts.down)
    tail = _Tail(run_dir / REQUESTS_FILE, name, watch)
    started = time.monotonic()
    child = spawn(command, log, keep_fds=keep_fds)
    try:
        while child.poll() is None:
            time.sleep(_POLL_S)
            tail.poll()
            on_progress(LocustProgress(time.monotonic() - started, tail.requests, tail.errors))
            down_s = watch.down_for()
            if down_s is not None:
                child.stop(_STOP_GRACE_S)
                raise TargetDown(
                    f"target {name}: went down (only connection failures for {down_s:.0f} s: "
                    f"{watch.last_error}); its remaining stages are skipped"
                )
    finally:
        child.stop(_STOP_GRACE_S)  # at once if it has ended; an error or signal stops it
    tail.poll()
    on_progress(LocustProgress(time.monotonic() - started, tail.requests, tail.errors))
    if child.returncode != 0:
        lines = log.read_text(errors="replace").strip().splitlines() or ["(no output)"]
        raise HarnessError(
            f"target {name}: Locust exited with code {child.returncode}: {lines[-1]} (log: {log})"
        )
