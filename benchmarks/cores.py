"""Where benchmark processes run: the server on one core, the client on another.

On two cores an unpinned client reads ~0.4 ms (p50) and ~1.5 ms (p95) worse at 64 streams,
and a server sharing the client's core makes every client look inaccurate, so each side gets
its own core (`taskset`, or this process's own affinity for an in-process client). With
fewer than two cores, or without `taskset`, nothing is pinned and the figures say so.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["CLIENT_CORE", "SERVER_CORE", "ProcessCpu", "on_core", "pinned", "pinning"]

SERVER_CORE = 0
CLIENT_CORE = 1


def _cores() -> set[int]:
    return set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else set()


def pinning() -> bool:
    """Whether server and client can have a core each here."""
    return {SERVER_CORE, CLIENT_CORE} <= _cores() and shutil.which("taskset") is not None


def pinned(core: int | str) -> list[str]:
    """The command prefix that runs a child on `core` (e.g. "0", or "0,1"); [] if unpinned."""
    return ["taskset", "-c", str(core)] if pinning() else []


@contextlib.contextmanager
def on_core(core: int) -> Iterator[None]:
    """Run this process (and the children it starts) on `core` for the block."""
    if not pinning():
        yield
        return
    before = _cores()
    os.sched_setaffinity(0, {core})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


class ProcessCpu:
    """CPU use of a process (user + system) between `start()` and `percent()`, from /proc."""

    def __init__(self, pid: int) -> None:
        self._stat = Path(f"/proc/{pid}/stat")
        self._cpu0, self._wall0 = self._seconds(), time.monotonic()

    def _seconds(self) -> float:
        try:
            fields = self._stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def start(self) -> None:
        self._cpu0, self._wall0 = self._seconds(), time.monotonic()

    def percent(self) -> float:
        return (self._seconds() - self._cpu0) / (time.monotonic() - self._wall0) * 100
