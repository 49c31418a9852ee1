"""Running one target's stages in a Locust process and following its progress.

Locust runs as `python -m locust -f loadtest/locustfile.py --headless ...` — the same file a
user can run by hand — with a `LocustSettings` JSON. Progress is read from the records it
appends to requests.jsonl and the stage windows it appends to stages.jsonl (a stage runs
until it has its samples, so only the generator knows when it ends), so the CLI never
imports Locust (or gevent's monkey-patching).
The same reading notices a target that went down (nothing but connection failures for
`timeouts.down`): Locust is stopped and `TargetDown` raised, instead of hammering a closed
port for the rest of the plan.
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import loadtest
from loadtest.config import LocustSettings
from loadtest.jsonl import JsonlFollower
from loadtest.records import REQUESTS_FILE, STAGES_FILE
from quantbench.children import spawn
from quantbench.errors import HarnessError
from quantbench.failures import DownWatch

__all__ = ["LocustProgress", "TargetDown", "locust_command", "run_locust"]

LOCUSTFILE = Path(loadtest.__file__).resolve().parent / "locustfile.py"
_POLL_S = 0.5
_STOP_GRACE_S = 15.0  # Locust writes `cancelled` for what is in flight and closes its stage


@dataclass
class LocustProgress:
    """Where one target's Locust run stands: seconds since it started, its requests and
    errors so far, how many of its stages have ended, and the running stage's ok samples
    and start (in `elapsed_s` terms)."""

    elapsed_s: float = 0.0
    requests: int = 0
    errors: int = 0
    stages_done: int = 0
    stage_ok: int = 0
    stage_started_s: float = 0.0


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


class _Watch:
    """Follows one target's records and stage windows since its Locust run began."""

    def __init__(self, run_dir: Path, target: str, first_stage: int, watch: DownWatch) -> None:
        self._requests: JsonlFollower[Any] = JsonlFollower(run_dir / REQUESTS_FILE, from_end=True)
        self._stages: JsonlFollower[Any] = JsonlFollower(run_dir / STAGES_FILE, from_end=True)
        self._target = target
        self._watch = watch
        self._started = time.monotonic()
        self._started_wall = time.time()
        self._ok: dict[int, int] = {}
        self.progress = LocustProgress()
        self._stage = first_stage

    def poll(self) -> LocustProgress:
        p = self.progress
        for record in self._requests.read():
            if not isinstance(record, dict) or record.get("target") != self._target:
                continue  # not a record of this target (the analysis reports odd lines)
            p.requests += 1
            ok = record.get("outcome") == "ok"
            p.errors += not ok
            if ok and not record.get("warmup"):
                stage = int(record.get("stage", -1))
                self._ok[stage] = self._ok.get(stage, 0) + 1
            self._watch.feed(str(record.get("outcome")), record.get("error"))
        for stage in self._stages.read():
            if isinstance(stage, dict) and stage.get("target") == self._target:
                p.stages_done += 1
                self._stage = int(stage.get("stage", self._stage)) + 1
                p.stage_started_s = float(stage.get("end_wall_s", 0.0)) - self._started_wall
        p.elapsed_s = time.monotonic() - self._started
        p.stage_ok = self._ok.get(self._stage, 0)
        return p


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
    tail = _Watch(run_dir, name, settings.stage_offset + settings.first_stage, watch)
    child = spawn(command, log, keep_fds=keep_fds)
    try:
        while child.wait(_POLL_S) is None:  # returns as soon as Locust exits
            on_progress(tail.poll())
            down_s = watch.down_for()
            if down_s is not None:
                child.stop(_STOP_GRACE_S)
                raise TargetDown(
                    f"target {name}: went down (only connection failures for {down_s:.0f} s: "
                    f"{watch.last_error}); its remaining stages are skipped"
                )
    finally:
        child.stop(_STOP_GRACE_S)  # at once if it has ended; an error or signal stops it
    on_progress(tail.poll())
    if child.returncode != 0:
        lines = log.read_text(errors="replace").strip().splitlines() or ["(no output)"]
        raise HarnessError(
            f"target {name}: Locust exited with code {child.returncode}: {lines[-1]} (log: {log})"
        )
