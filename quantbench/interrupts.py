"""Stopping on a signal: SIGTERM and SIGHUP end a command the way Ctrl-C does.

Python turns SIGINT into `KeyboardInterrupt` in the main thread; `stop_on_signals` does the
same for SIGTERM (a service manager, `timeout`, a CI job being cancelled) and SIGHUP (a
closed terminal) with `Stopped`, so `finally` blocks stop the child processes and write
run.json. Only the first signal raises: one that arrives while the command is already
stopping is ignored, so its clean-up is never cut short (a `kill -9` still ends it at once,
and the children die with it: `quantbench.children`).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["Stopped", "stop_on_signals"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Stopped(BaseException):
    """A stop signal arrived (a BaseException, like KeyboardInterrupt: not an error to catch
    with `except Exception`)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, the first SIGINT, SIGTERM or SIGHUP raises `Stopped`."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    stopping = False

    def handler(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            raise Stopped(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in _SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
