"""Creating a run directory and keeping its run.json up to date."""

from __future__ import annotations

import json
import os
import platform
import socket
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from analysis.rundir import RUN_FILE

__all__ = ["create_run_dir", "now_iso", "versions", "write_run_meta"]


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def create_run_dir(out_dir: Path, name: str) -> Path:
    """`<out>/<UTC timestamp>-<name>`, with a numeric suffix if that already exists."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir.mkdir(parents=True, exist_ok=True)
    for attempt in range(1000):
        suffix = f"-{attempt}" if attempt else ""
        path = out_dir / f"{stamp}-{name}{suffix}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"{out_dir}: cannot find a free run directory name for {name}")


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


def write_run_meta(run_dir: Path, meta: dict[str, Any]) -> None:
    """Atomically (re)write run.json; it never holds secrets, only env var names."""
    meta.setdefault("host", host_info())
    path = run_dir / RUN_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=2, default=str) + "\n")
    tmp.replace(path)
