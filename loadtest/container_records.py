"""The container sample record: a compose target's container at one instant, in
`containers.jsonl` of a run directory, and the one rule for what about it invalidates a stage.

`quantbench run` reads these facts through the Docker Engine API (quantbench/containers.py)
every telemetry interval while a `compose:` target's stages run; `analysis` reads them through
this schema, like the request records. Field names follow the Engine API (docs/telemetry.md).
"""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel, ConfigDict

__all__ = ["CONTAINERS_FILE", "ContainerSample", "ContainerState", "change_reason"]

CONTAINERS_FILE = "containers.jsonl"


class ContainerState(Protocol):
    """What `change_reason` compares: the fields of GET /containers/{id}/json it needs."""

    @property
    def service(self) -> str: ...
    @property
    def container_id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def started_at(self) -> str: ...
    @property
    def restart_count(self) -> int: ...
    @property
    def oom_killed(self) -> bool: ...
    @property
    def exit_code(self) -> int: ...


class ContainerSample(BaseModel):
    """One sample: the container's state (`State.*`, `RestartCount`) and, when the stats API
    answered, its cumulative CPU time and memory without page cache (as `docker stats`).
    `error` says why the Engine API could not be read at this instant (then only the
    identity fields are set)."""

    model_config = ConfigDict(extra="forbid")

    target: str
    service: str
    wall_s: float
    container_id: str = ""
    name: str = ""
    status: str = ""
    started_at: str = ""
    started_wall_s: float | None = None  # `started_at` as Unix time
    restart_count: int = 0
    oom_killed: bool = False
    exit_code: int = 0
    cpu_total_ns: int | None = None
    online_cpus: int | None = None
    memory_used_bytes: int | None = None
    memory_limit_bytes: int | None = None
    error: str | None = None


def change_reason(before: ContainerState, after: ContainerState) -> str | None:
    """Why a stage that began with `before` and ended with `after` cannot be trusted, or None
    if the container ran through it untouched: an OOM kill, a replaced container, a restart
    (a higher restart count or a new start time), or a container no longer running."""
    if after.oom_killed and not before.oom_killed:
        return f"container {after.name} was OOM-killed"
    if after.container_id != before.container_id:
        return f"container of {after.service} was replaced ({before.name} -> {after.name})"
    if after.restart_count > before.restart_count:
        return (
            f"container {after.name} restarted "
            f"(restart count {before.restart_count} -> {after.restart_count})"
        )
    if after.started_at != before.started_at:
        return f"container {after.name} restarted (started again at {after.started_at})"
    if after.status != "running":
        return f"container {after.name} is {after.status} (exit code {after.exit_code})"
    return None
