"""Python/process collectors of a server, with a start time a simulated restart can move.

A simulated restart happens inside one OS process, so the real `process_start_time_seconds`
would not change; this collector reports the time the simulated process (re)started, which
is what the analysis uses to detect a restart.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector

__all__ = ["register_process_collectors"]

_START = "process_start_time_seconds"


class _ProcessCollector(ProcessCollector):
    def __init__(self, started_at: float | None) -> None:
        super().__init__(registry=None)
        self._started_at = started_at

    def collect(self) -> Iterable[Metric]:
        for family in super().collect():
            if self._started_at is not None and family.name == _START:
                yield GaugeMetricFamily(_START, family.documentation, value=self._started_at)
            else:
                yield family


def register_process_collectors(registry: CollectorRegistry, started_at: float | None) -> None:
    """`python_*`, `process_*` and `python_gc_*` series, as vLLM's prometheus_client exposes."""
    registry.register(_ProcessCollector(started_at))
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
