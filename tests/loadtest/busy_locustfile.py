"""Test-only: loaded beside the real locustfile (`locust -f loadtest/locustfile.py,THIS`), it
spawns a greenlet that holds the event loop for 40 ms of CPU time, then yields 10 ms — a
saturated generator in miniature, without the product code knowing anything of it. It spins on
the process's CPU clock, not the wall clock: however loaded the host, each hold is 40 ms of this
process's own work, so the probe tick around it is at least 30 ms late *and* busy (see
`loadtest.generator_stats.LoopLagProbe`), and the lag it reports cannot fall under the bound."""

from __future__ import annotations

import time
from typing import Any

import gevent
from locust import events


def _hog() -> None:
    while True:
        end = time.process_time() + 0.04
        while time.process_time() < end:
            pass  # never yields: nothing else in this process runs meanwhile
        gevent.sleep(0.01)


@events.test_start.add_listener
def _start(environment: Any, **_: Any) -> None:
    gevent.spawn(_hog)
