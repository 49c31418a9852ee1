"""A compose target's container sampled while its stages run: state (restarts, OOM kill, exit
code) and CPU/memory every interval into `containers.jsonl`, through the Docker Engine API
(quantbench/containers.py). The analysis invalidates a stage during which the container
restarted or was OOM-killed (analysis/container_stages.py); a failed read is a sample with
its `error`, never the end of the run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from loadtest.container_records import CONTAINERS_FILE, ContainerSample
from loadtest.records import RecordWriter
from quantbench.containers import Containers, DockerUnavailable

__all__ = ["ContainerWatch"]


class ContainerWatch:
    """Samples `service`'s container every `interval_s` on a background thread: one sample at
    `start()`, one at `stop()`. `first` and `last` are the readable samples at each end."""

    def __init__(
        self,
        containers: Containers,
        service: str,
        target: str,
        run_dir: Path,
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.containers = containers
        self.service = service
        self.target = target
        self.interval_s = interval_s
        self.path = Path(run_dir) / CONTAINERS_FILE
        self._clock = clock
        self._writer: RecordWriter | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.first: ContainerSample | None = None
        self.last: ContainerSample | None = None
        self.last_error: str | None = None

    def sample(self) -> ContainerSample:
        """Read the container now and append the sample."""
        wall_s = self._clock()
        try:
            facts = self.containers.facts(self.service)
        except (DockerUnavailable, OSError) as exc:  # OSError: requests lost the engine
            sample = ContainerSample(
                target=self.target, service=self.service, wall_s=wall_s, error=str(exc)
            )
        else:
            stats = None
            if facts.status == "running":
                try:
                    stats = self.containers.stats(self.service)
                except (DockerUnavailable, OSError):
                    stats = None  # stats of a container that just stopped: its state says why
            sample = ContainerSample(
                target=self.target,
                service=self.service,
                wall_s=wall_s,
                container_id=facts.container_id,
                name=facts.name,
                status=facts.status,
                started_at=facts.started_at,
                started_wall_s=facts.started_wall_s,
                restart_count=facts.restart_count,
                oom_killed=facts.oom_killed,
                exit_code=facts.exit_code,
                cpu_total_ns=None if stats is None else stats.cpu_total_ns,
                online_cpus=None if stats is None else stats.online_cpus,
                memory_used_bytes=None if stats is None else stats.memory_used_bytes,
                memory_limit_bytes=None if stats is None else stats.memory_limit_bytes,
            )
        if self._writer is not None:
            self._writer.write(sample)
        if sample.error is None:
            self.first = self.first or sample
            self.last = sample
        else:
            self.last_error = sample.error
        return sample

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def start(self) -> ContainerWatch:
        self._writer = RecordWriter(self.path)
        self.sample()
        self._thread = threading.Thread(
            target=self._run, name=f"container-{self.target}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """End the thread and take a last sample (idempotent)."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        self.sample()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
