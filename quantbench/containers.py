"""Facts about a compose service's container, read through the Docker Engine API (the `docker`
SDK, not CLI text): its image and digest, start time, restart count, OOM kill and exit code;
CPU and memory samples from the stats API; and the last log lines of a container that failed,
saved under `logs/` of the run directory.

Field names are the Engine API's (`GET /containers/{id}/json`: `State.OOMKilled`,
`State.StartedAt`, `RestartCount`, `Image`; `GET /containers/{id}/stats`: `cpu_stats`,
`memory_stats`; docs.docker.com/reference/api/engine). The client is injectable: tests point
the real SDK at a fake Engine on a unix socket. Compose finds a service's containers by the
labels it sets, `com.docker.compose.project` and `com.docker.compose.service`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import docker
import docker.errors

from analysis.container_stages import StageResources, stage_resources
from loadtest.container_records import change_reason
from loadtest.secrets import REDACTED
from quantbench.errors import HarnessError

__all__ = [
    "LOGS_DIR",
    "ContainerFacts",
    "ContainerStats",
    "Containers",
    "DockerUnavailable",
    "StageResources",
    "stage_resources",
]

LOGS_DIR = "logs"
_PROJECT_LABEL = "com.docker.compose.project"
_SERVICE_LABEL = "com.docker.compose.service"
# Hugging Face tokens, the secret a serving container is most likely to print.
_HF_TOKEN = re.compile(r"\bhf_[A-Za-z0-9]{30,}\b")


class DockerUnavailable(HarnessError):
    """The Docker Engine API cannot be reached, or the service has no container."""


@dataclass(frozen=True)
class ContainerFacts:
    """A container at one instant (GET /containers/{id}/json)."""

    service: str
    container_id: str
    name: str
    image: str
    image_id: str
    repo_digest: str | None
    status: str
    started_at: str
    started_wall_s: float | None
    restart_count: int
    oom_killed: bool
    exit_code: int
    error: str
    health: str | None

    def change_since(self, before: ContainerFacts) -> str | None:
        """Why a stage that began with `before` and ended with these facts is invalid, or None
        if the container ran through it untouched (loadtest.container_records.change_reason,
        the rule the analysis applies to the recorded samples)."""
        return change_reason(before, self)


@dataclass(frozen=True)
class ContainerStats:
    """One stats sample (GET /containers/{id}/stats?stream=false&one-shot=true).

    `cpu_total_ns` is the container's cumulative CPU time, so CPU use over a stage is a
    difference of two samples. `memory_used_bytes` excludes the page cache as `docker stats`
    does (usage - inactive_file on cgroup v2, - total_inactive_file on v1: docker/cli
    cli/command/container/stats_helpers.go, calculateMemUsageUnixNoCache)."""

    wall_s: float
    cpu_total_ns: int
    online_cpus: int
    memory_used_bytes: int
    memory_limit_bytes: int


class Containers:
    """The containers of one compose project, through the Engine API.

    `client` is a `docker.DockerClient` (default: `docker.from_env()`, which honours
    DOCKER_HOST), made on first use; `clock` dates stats samples (wall time)."""

    def __init__(
        self,
        project: str = "quantbench",
        client: docker.DockerClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.project = project
        self._client = client
        self._clock = clock

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            try:
                self._client = docker.from_env()
            except docker.errors.DockerException as exc:
                raise DockerUnavailable(
                    f"cannot reach the Docker Engine API ({_first_line(exc)}; is Docker "
                    "running, and may this user use it? check DOCKER_HOST)"
                ) from exc
        return self._client

    def _container(self, service: str) -> Any:
        """The service's container (the newest, if compose kept several)."""
        labels = [f"{_PROJECT_LABEL}={self.project}", f"{_SERVICE_LABEL}={service}"]
        try:
            found = self.client.containers.list(all=True, filters={"label": labels})
        except docker.errors.DockerException as exc:
            raise DockerUnavailable(
                f"compose service {service}: cannot list its containers: {_first_line(exc)}"
            ) from exc
        if not found:
            raise DockerUnavailable(
                f"compose service {service}: no container in project {self.project} "
                "(not started, or started under another project name?)"
            )
        return max(found, key=lambda c: str(c.attrs.get("Created", "")))

    def facts(self, service: str) -> ContainerFacts:
        container = self._container(service)
        attrs = container.attrs
        state = attrs.get("State") or {}
        image_id = str(attrs.get("Image", ""))
        started_at = str(state.get("StartedAt", ""))
        return ContainerFacts(
            service=service,
            container_id=str(attrs.get("Id", container.id)),
            name=str(attrs.get("Name", "")).lstrip("/"),
            image=str((attrs.get("Config") or {}).get("Image", "")),
            image_id=image_id,
            repo_digest=self._repo_digest(image_id),
            status=str(state.get("Status", "")),
            started_at=started_at,
            started_wall_s=_rfc3339(started_at),
            restart_count=int(attrs.get("RestartCount") or 0),
            oom_killed=bool(state.get("OOMKilled")),
            exit_code=int(state.get("ExitCode") or 0),
            error=str(state.get("Error") or ""),
            health=(state.get("Health") or {}).get("Status"),
        )

    def _repo_digest(self, image_id: str) -> str | None:
        """`repo@sha256:...` of a pulled image; None for one built locally (no registry)."""
        try:
            digests = self.client.images.get(image_id).attrs.get("RepoDigests") or []
        except docker.errors.DockerException:
            return None
        return str(digests[0]) if digests else None

    def stats(self, service: str) -> ContainerStats:
        """One stats sample of the service's container, dated now."""
        container = self._container(service)
        wall_s = self._clock()
        try:
            data = container.stats(stream=False, one_shot=True)
        except docker.errors.DockerException as exc:
            raise DockerUnavailable(
                f"compose service {service}: cannot read its stats: {_first_line(exc)}"
            ) from exc
        cpu = data.get("cpu_stats") or {}
        memory = data.get("memory_stats") or {}
        return ContainerStats(
            wall_s=wall_s,
            cpu_total_ns=int((cpu.get("cpu_usage") or {}).get("total_usage") or 0),
            online_cpus=int(cpu.get("online_cpus") or 0),
            memory_used_bytes=_memory_no_cache(memory),
            memory_limit_bytes=int(memory.get("limit") or 0),
        )

    def save_logs(
        self,
        service: str,
        run_dir: Path,
        lines: int = 200,
        secrets: Collection[str] = (),
        redact: Callable[[str], str] | None = None,
    ) -> Path:
        """The container's last `lines` log lines (stdout and stderr, with Docker's
        timestamps) in `<run_dir>/logs/<service>.log`; every value in `secrets` and any
        Hugging Face token is replaced by `[redacted]`, and the text goes through `redact`
        (the run's `loadtest.secrets.Redactor`: API keys, `Bearer` values). Returns the
        file's path."""
        container = self._container(service)
        try:
            raw = container.logs(stdout=True, stderr=True, tail=lines, timestamps=True)
        except docker.errors.DockerException as exc:
            raise DockerUnavailable(
                f"compose service {service}: cannot read its logs: {_first_line(exc)}"
            ) from exc
        text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
        for secret in sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True):
            text = text.replace(secret, REDACTED)
        text = _HF_TOKEN.sub(REDACTED, text)
        if redact is not None:
            text = redact(text)
        path = Path(run_dir) / LOGS_DIR / f"{service}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path


def _memory_no_cache(memory: dict[str, Any]) -> int:
    usage = int(memory.get("usage") or 0)
    stats = memory.get("stats") or {}
    for key in ("total_inactive_file", "inactive_file"):  # cgroup v1, then v2
        if key in stats and int(stats[key]) < usage:
            return usage - int(stats[key])
    return usage


def _rfc3339(text: str) -> float | None:
    """Docker's `2026-11-27T07:12:03.123456789Z` as Unix time; None for the zero time
    (`0001-01-01T00:00:00Z`, never started) or anything unreadable."""
    match = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", text)
    if not match or text.startswith("0001-"):
        return None
    fraction = float(match.group(2) or 0.0)
    zone = "+00:00" if match.group(3) == "Z" else match.group(3)
    return datetime.fromisoformat(match.group(1) + zone).timestamp() + fraction


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
