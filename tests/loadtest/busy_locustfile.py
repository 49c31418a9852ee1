"""Test-only: loaded beside the real locustfile (`locust -f loadtest/locustfile.py,THIS`), it
spawns a greenlet that holds the event loop 40 ms of every 50 ms — a saturated generator in
miniature, without the product code knowing anything of it."""

from __future__ import annotations

import time
from typing import Any

import gevent
from locust import events


def _hog() -> None:
    while True:
        end = time.perf_counter() + 0.04
        while time.perf_counter() < end:
            pass  # never yields: nothing else in this process runs meanwhile
        gevent.sleep(0.01)


@events.test_start.add_listener
def _start(environment: Any, **_: Any) -> None:
    gevent.spawn(_hog)
