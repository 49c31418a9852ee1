"""Whether a target went down mid-run: nothing but connection failures for a while.

(The failure that dominates a target whose every stage is invalid is
`analysis.errors.dominant_failure`, from the run's error breakdown.)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from loadtest.records import Outcome

__all__ = ["DownWatch"]

_CONNECTION_LOST = frozenset({Outcome.CONNECT_ERROR, Outcome.TIMEOUT_CONNECT})


@dataclass
class DownWatch:
    """Decides that a target is down: nothing but connection failures for `after_s`.

    Fed each record's outcome as it is read; any other outcome (even an HTTP error: the
    server answered) resets it. A simulated restart or a short refusal passes; a server that
    died does not keep a load generator hammering a closed port for the rest of the plan."""

    after_s: float
    clock: Callable[[], float] = time.monotonic
    _since: float | None = None
    _count: int = 0
    last_error: str = ""

    def feed(self, outcome: str, error: str | None) -> None:
        if outcome in _CONNECTION_LOST:
            if self._since is None:
                self._since = self.clock()
            self._count += 1
            self.last_error = error or outcome
        else:
            self._since, self._count = None, 0

    def down_for(self) -> float | None:
        """Seconds of nothing but connection failures, once that passed `after_s`."""
        if self._since is None or self._count < 2:
            return None
        elapsed = self.clock() - self._since
        return elapsed if elapsed >= self.after_s else None
