"""GPU and container telemetry around one target's stages (`quantbench run`).

`target_telemetry` is the runner's hook around a target's stages: it picks the GPU source the
`telemetry:` config asks for (a simulator's own simulated exporter; a dcgm-exporter page; NVML
or nvidia-smi on this host; or none, saying why), samples it into gpu.jsonl, and for a
`compose:` target samples the container (state, CPU, memory) into containers.jsonl, recording
both in the target's run.json entry. `failure_logs` is the compose hook that saves a failed
container's last log lines into logs/ (redacted) and points the one-line error there.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

from loadtest.container_records import change_reason
from loadtest.run_meta import ContainerMeta, TargetMeta, TelemetryMeta
from loadtest.secrets import Redactor
from quantbench.compose import ComposeProject
from quantbench.config import TargetConfig, TelemetryConfig
from quantbench.container_watch import ContainerWatch
from quantbench.containers import Containers, DockerUnavailable
from quantbench.dcgm_backend import DcgmBackend
from quantbench.errors import HarnessError, QuantbenchError
from quantbench.gpu_sampler import BACKENDS, GpuBackend, GpuSampler, NoGpu, open_backend

__all__ = ["LOG_LINES", "SIM_DCGM_PATH", "failure_logs", "open_gpu_source", "target_telemetry"]

LOG_LINES = 200
SIM_DCGM_PATH = "/dcgm/metrics"  # services.sim.dcgm_page.DCGM_PATH (no import of services)

ContainersFactory = Callable[[str], Containers]


def _on_this_host(url: str) -> bool:
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def open_gpu_source(
    config: TelemetryConfig, target: TargetConfig, url: str
) -> tuple[GpuBackend | None, TelemetryMeta]:
    """The opened GPU source for `target` (None: no telemetry) and what run.json says of it.

    Raises HarnessError when a source the config names explicitly cannot be read."""
    if config.source == "none":
        return None, TelemetryMeta(source="none", note="telemetry.source is none")
    if target.sim is not None:
        return _simulated_source(config, url)
    factories: dict[str, Callable[[], GpuBackend]] = {}
    skipped = []
    if config.dcgm_url:
        dcgm_url = config.dcgm_url
        factories["dcgm"] = lambda: DcgmBackend(dcgm_url)
    else:
        skipped.append("dcgm: no telemetry.dcgm_url")
    if config.source != "auto" or _on_this_host(url):
        factories.update(BACKENDS)
    else:
        skipped.append(f"nvml, nvidia-smi: {url} is not on this host")
    reasons = list(skipped)
    backend: GpuBackend | None = None
    if factories:
        try:
            backend, gpus = open_backend(config.source, factories)
        except NoGpu as exc:
            if config.source != "auto":
                raise HarnessError(
                    f"target {target.name}: telemetry.source {config.source}: {exc} "
                    "(fix it, or set telemetry.source to auto or none)"
                ) from exc
            reasons.append(str(exc).removeprefix("no GPU: "))
    if backend is None:
        return None, TelemetryMeta(source="none", note="no GPU telemetry: " + "; ".join(reasons))
    url_seen = config.dcgm_url if backend.name == "dcgm" else None
    why = "; ".join(skipped) if config.source == "auto" and skipped else None
    return backend, TelemetryMeta(
        source=backend.name, url=url_seen, interval_s=config.interval, gpus=gpus, note=why
    )


def _simulated_source(config: TelemetryConfig, url: str) -> tuple[GpuBackend | None, TelemetryMeta]:
    """A simulator's own page: its simulated GPU, whatever `telemetry.source` names but none."""
    page = f"{url}{SIM_DCGM_PATH}"
    backend = DcgmBackend(page)
    try:
        gpus = backend.open()
    except NoGpu as exc:
        return None, TelemetryMeta(source="none", url=page, note=str(exc))
    note = "the simulator's own simulated dcgm-exporter page: every figure is simulated"
    return backend, TelemetryMeta(
        source="simulated-dcgm", url=page, interval_s=config.interval, gpus=gpus, note=note
    )


def _kept_gpus(config: TelemetryConfig, target: TargetConfig, info: TargetMeta) -> list[int] | None:
    """The GPU indices that belong to the target: `telemetry.gpus`, else the one GPU a compose
    service started alone was pinned to; None (every GPU) otherwise."""
    if target.sim is not None:
        return None
    if config.gpus:
        return list(config.gpus)
    gpus = ((info.compose or {}).get("resolved") or {}).get("gpus") or []
    if target.compose is not None and len(gpus) == 1 and str(gpus[0]).isdigit():
        return [int(gpus[0])]
    return None


def _container_meta(watch: ContainerWatch, project: str, containers: Containers) -> ContainerMeta:
    first = watch.first
    if first is None:
        return ContainerMeta(service=watch.service, project=project, note=watch.last_error)
    try:
        facts = containers.facts(watch.service)
        image, image_id, digest = facts.image, facts.image_id, facts.repo_digest
    except (DockerUnavailable, OSError):
        image = image_id = ""
        digest = None
    return ContainerMeta(
        service=watch.service,
        project=project,
        container_id=first.container_id,
        name=first.name,
        image=image,
        image_id=image_id,
        repo_digest=digest,
        started_at=first.started_at,
        restart_count=first.restart_count,
        oom_killed=first.oom_killed,
        exit_code=first.exit_code,
        status=first.status,
    )


def _save_logs(
    containers: Containers, service: str, run_dir: Path, redact: Callable[[str], str]
) -> str | None:
    """logs/<service>.log relative to the run directory, or None if Docker could not say."""
    try:
        path = containers.save_logs(service, run_dir, LOG_LINES, redact=redact)
    except (DockerUnavailable, OSError):  # requests' errors are OSErrors: the engine went away
        return None
    return str(path.relative_to(run_dir))


@contextmanager
def target_telemetry(
    config: TelemetryConfig,
    target: TargetConfig,
    url: str,
    run_dir: Path,
    info: TargetMeta,
    save: Callable[[], None],
    containers: ContainersFactory = Containers,
    say: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """Sample the target's GPU (and container) for the block; `info` and run.json record it,
    and `say` gets one line saying where the GPU figures come from."""
    backend, meta = open_gpu_source(config, target, url)
    meta.kept = _kept_gpus(config, target, info)
    info.telemetry = meta
    if say is not None:
        say(_source_line(meta))
    sampler = None
    if backend is not None:
        sampler = GpuSampler(run_dir, backend, config.interval, meta.kept, target.name).start()
    watch = docker = None
    project = str((info.compose or {}).get("project") or "quantbench")
    if target.compose is not None:
        docker = containers(project)
        watch = ContainerWatch(docker, target.compose, target.name, run_dir, config.interval)
        watch.start()
        info.container = _container_meta(watch, project, docker)
        if watch.first is None:  # no Engine API here: nothing more to learn from it
            watch.stop()
            watch = None
    save()
    try:
        yield
    finally:
        if sampler is not None:
            sampler.stop()
            meta.samples = sampler.samples_written
            meta.error = sampler.error
            meta.scrape_errors = getattr(backend, "errors", 0)
        if watch is not None and docker is not None and info.container is not None:
            watch.stop()
            _container_end(watch, info.container, docker, run_dir, target)
        save()


def _source_line(meta: TelemetryMeta) -> str:
    if meta.source == "none":
        return f"  GPU figures: none ({meta.note})"
    kept = meta.kept if meta.kept is not None else "all"
    gpus = f"{len(meta.gpus)} GPU(s) seen, kept: {kept}"
    return f"  GPU figures: {meta.source} every {meta.interval_s:g} s ({gpus})"


def _container_end(
    watch: ContainerWatch,
    record: ContainerMeta,
    containers: Containers,
    run_dir: Path,
    target: TargetConfig,
) -> None:
    """The container's state as its stages ended; its logs when something happened to it."""
    first, last = watch.first, watch.last
    if first is None or last is None:
        return
    record.status, record.exit_code = last.status, last.exit_code
    record.restart_count, record.oom_killed = last.restart_count, last.oom_killed
    record.changed = change_reason(first, last)
    if record.changed is not None:
        record.logs = _save_logs(containers, watch.service, run_dir, Redactor(target.api_key_env))


def compose_project_name(project: ComposeProject) -> str:
    """The compose project's name (`name:` of the file, else compose's default)."""
    try:
        return str(project.config().get("name") or project.project_name or "quantbench")
    except HarnessError:
        return project.project_name or "quantbench"


def failure_logs(
    project: ComposeProject,
    service: str,
    target: TargetConfig,
    run_dir: Path,
    containers: ContainersFactory = Containers,
) -> Callable[[QuantbenchError], QuantbenchError | None]:
    """The `ComposeProject.running(on_failure=...)` hook of a compose target: when the service
    fails to come up, or the target fails while it runs, save the container's last log lines
    (redacted) in logs/<service>.log and return the same error pointing there."""

    def on_failure(error: QuantbenchError) -> QuantbenchError | None:
        docker = containers(compose_project_name(project))
        saved = _save_logs(docker, service, run_dir, Redactor(target.api_key_env))
        if saved is None:
            return None
        where = Path(run_dir) / saved
        return type(error)(f"{error} (its last {LOG_LINES} log lines: {where})")

    return on_failure
