"""Tie a process's life to its parent's: when the parent dies, so does this process.

Linux delivers a chosen signal to a process when its parent dies if asked with
`prctl(PR_SET_PDEATHSIG)` (prctl(2)); the setting survives `exec` but not `fork`, so each
process that must not outlive its parent asks for itself. Elsewhere (macOS) a daemon thread
polls the parent's pid instead, which does not survive an `exec`. Either way, a parent that is
already gone when this is called (it died between our fork and now) ends this process at once.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

__all__ = ["die_with_parent"]

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_POLL_S = 0.5


def _prctl_pdeathsig(sig: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return int(libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _watch(parent_pid: int, sig: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(_POLL_S)
    os.kill(os.getpid(), sig)


def die_with_parent(parent_pid: int, sig: int = signal.SIGKILL) -> None:
    """Receive `sig` when the process `parent_pid` (our parent now) dies."""
    if not _prctl_pdeathsig(sig):
        threading.Thread(target=_watch, args=(parent_pid, sig), daemon=True).start()
    if os.getppid() != parent_pid:  # the parent died before the request above took hold
        os.kill(os.getpid(), sig)
