"""What went wrong with a target, in one line: the server's own message, a target that went
down mid-run, and the failure that dominates a target whose every stage is invalid.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from loadtest.records import Outcome
from loadtest.server_text import server_message

__all__ = ["DownWatch", "dominant_failure"]

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


def dominant_failure(requests: pd.DataFrame) -> str | None:
    """`400 http_error (57 of 60 requests): maximum context length is 1024 tokens` for the
    most common failure among `requests`, or None when most of them are ok."""
    failures: Counter[tuple[str, int | None]] = Counter()
    example: dict[tuple[str, int | None], str] = {}
    for outcome, status, error in zip(
        requests["outcome"].astype(str),
        requests["http_status"],
        requests["error"],
        strict=True,
    ):
        if outcome == Outcome.OK.value:
            continue
        key = (outcome, None if pd.isna(status) else int(status))
        failures[key] += 1
        if key not in example and isinstance(error, str) and error:
            example[key] = error
    if not failures or sum(failures.values()) * 2 <= len(requests):
        return None
    (outcome, status), count = failures.most_common(1)[0]
    label = f"{status} {outcome}" if status is not None else outcome
    text = f"{label} ({count} of {len(requests)} requests)"
    message = server_message(example.get((outcome, status)))
    return f"{text}: {message}" if message else text
