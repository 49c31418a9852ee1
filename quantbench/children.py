"""Child processes (simulators, Locust) that never outlive the `quantbench` that started them.

Each child runs in its own process group, so stopping it reaches the processes it forks too
(Locust's `--processes` workers), and a Ctrl-C in the terminal reaches only `quantbench`,
which then stops its children in order. Each is started through a one-line exec wrapper
(`python -m quantbench.children PARENT_PID -- COMMAND...`) that asks Linux to SIGKILL it
when its parent dies (`prctl(PR_SET_PDEATHSIG)`, which survives the exec) and exits at once
if the parent is already gone, so a `kill -9` of `quantbench` leaves nothing running.
Processes that a child forks itself lose that setting on fork (prctl(2)); the locustfile
sets it again in each forked worker (`loadtest.lifeline`).

`stop()` sends SIGTERM to the group (Locust writes `cancelled` for what is in flight and
closes its stage), waits, then SIGKILLs whatever of the group is left.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from loadtest.lifeline import die_with_parent

__all__ = ["Child", "lifeline_argv", "spawn"]

_STOP_POLL_S = 0.05


class Child:
    """A running child process group; use as a context manager or call `stop()`."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self._process = process
        self.pid = process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.returncode

    def poll(self) -> int | None:
        return self._process.poll()

    def wait(self, timeout_s: float) -> int | None:
        """The exit code once it exits within `timeout_s`, else None (it runs on)."""
        try:
            return self._process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, grace_s: float = 10.0) -> int:
        """SIGTERM the group, wait up to `grace_s`, then SIGKILL what is left; the exit code."""
        if self._process.poll() is None:
            _signal_group(self.pid, signal.SIGTERM)
            deadline = time.monotonic() + grace_s
            while self._process.poll() is None and time.monotonic() < deadline:
                time.sleep(_STOP_POLL_S)
        _signal_group(self.pid, signal.SIGKILL)  # stragglers of the group, if any
        return self._process.wait()

    def __enter__(self) -> Child:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    # ProcessLookupError: the group is gone; PermissionError: macOS, for a group of zombies.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def lifeline_argv(command: list[str]) -> list[str]:
    """`command` behind the exec wrapper that makes it die with this process (a child that
    must stream its stdout to us, e.g. `nvidia-smi -lms`, is started with this, not `spawn`)."""
    return [sys.executable, "-m", "quantbench.children", str(os.getpid()), "--", *command]


def spawn(
    command: list[str],
    log: Path,
    *,
    keep_fds: tuple[int, ...] = (),
    env: dict[str, str] | None = None,
) -> Child:
    """Start `command` in a new process group, its stdout and stderr replacing `log`.

    `keep_fds` stay open in the child (the run directory's lock, so that a generator that
    somehow outlives its parent still holds the run directory)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as sink:
        process = subprocess.Popen(
            lifeline_argv(command),
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            process_group=0,
            pass_fds=keep_fds,
            env=env,
        )
    return Child(process)


def _exec_wrapped(argv: list[str]) -> None:
    """`PARENT_PID -- COMMAND...`: die with the parent, then become COMMAND."""
    parent, separator, *command = argv
    if separator != "--" or not command:
        sys.exit("usage: python -m quantbench.children PARENT_PID -- COMMAND [ARG...]")
    die_with_parent(int(parent))
    os.execvp(command[0], command)


if __name__ == "__main__":
    _exec_wrapped(sys.argv[1:])
