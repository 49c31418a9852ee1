"""Creating a run directory, keeping its run.json current, and holding it while a run writes.

The lock: `quantbench run` takes an exclusive `flock` on `<run dir>/.lock` for as long as it
runs, and hands the locked descriptor to its load generator, so the lock stays held while
any process that writes records is alive. A second run on the same directory (`--resume`
while the first, or its generator, still runs) is refused instead of mixing two runs.
"""

from __future__ import annotations

import fcntl
import os
import platform
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from loadtest.records import STAGES_FILE
from loadtest.run_meta import RunMeta
from quantbench.errors import ConfigError, HarnessError

__all__ = [
    "LOCK_FILE",
    "create_run_dir",
    "host_info",
    "locked",
    "nothing_measured",
    "now_iso",
    "versions",
    "write_run_meta",
]

LOCK_FILE = ".lock"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def create_run_dir(out_dir: Path, name: str) -> Path:
    """`<out>/<UTC timestamp>-<name>`, with a numeric suffix if that already exists."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(1000):
            suffix = f"-{attempt}" if attempt else ""
            path = out_dir / f"{stamp}-{name}{suffix}"
            try:
                path.mkdir()
            except FileExistsError:
                continue
            probe = path / ".writable"
            probe.write_bytes(b"")
            probe.unlink()
            return path
    except OSError as exc:
        raise ConfigError(
            f"--out {out_dir}: cannot create a run directory there "
            f"({exc.strerror or exc}); choose a writable folder"
        ) from exc
    raise ConfigError(f"--out {out_dir}: no free run directory name for {name}")


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in ("quantbench", "locust", "pandas", "pydantic"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def host_info() -> dict[str, Any]:
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "argv": sys.argv,
    }


def write_run_meta(run_dir: Path, meta: RunMeta) -> None:
    """Atomically (re)write run.json; it never holds secrets, only env var names."""
    if not meta.host:
        meta.host = host_info()
    meta.write(run_dir)


def nothing_measured(run_dir: Path, meta: RunMeta) -> str | None:
    """Why no stage of the run ended (what run.json keeps: each target's `stopped`, the
    signal), or None once one has: before its first stage a run has nothing to report."""
    stages = run_dir / STAGES_FILE
    if stages.exists() and stages.stat().st_size > 0:
        return None
    reasons = [t.stopped for t in meta.targets if t.stopped]
    if meta.interrupted:
        reasons.append(f"interrupted by {meta.interrupted}")
    if reasons:
        return "; ".join(reasons)
    if meta.ended_at is None:
        return "no stage has ended yet (still running, or killed before its first stage ended)"
    return "no stage ran"


@contextmanager
def locked(run_dir: Path) -> Iterator[int]:
    """Hold the run directory's lock for the block; yields the locked descriptor (pass it
    to child processes that write into the directory)."""
    path = run_dir / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise HarnessError(f"{path}: cannot open the run's lock ({exc.strerror})") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            raise HarnessError(
                f"{run_dir} is in use by a run that is still going (quantbench pid {holder}, "
                "or its load generator): wait for it to end, or stop it, then try again"
            ) from exc
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield fd
    finally:
        os.close(fd)
