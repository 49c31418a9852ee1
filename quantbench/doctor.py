"""`quantbench doctor [bench.yaml]`: can a run start on this host? A table of checks, each
failure with its fix, before anyone spends two hours on a sweep.

Facts are gathered once (quantbench/hostfacts.py for Docker, GPUs and images; the compose file
as compose renders it; quantbench/doctor_targets.py for `url:` targets) and judged by small
pure functions that take those facts as arguments. Every reach into the host goes through
`Host`, which tests replace. Exit 0 when a run can start, 1 when a check failed, 2 on bad input.
"""

from __future__ import annotations

import argparse
import os
import shutil
import stat
import subprocess
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rich.console import Console
from rich.table import Table

from quantbench.compose import ComposeProject, Runner
from quantbench.config import BenchConfig, load_config
from quantbench.cuda import (
    ImageNeeds,
    arch_supported,
    dockerfile_needs,
    driver_for_cuda,
    gpu_brands,
    image_env_needs,
    known_image_needs,
    parse_version,
)
from quantbench.doctor_targets import (
    Context,
    HttpProber,
    Prober,
    compose_context,
    limits_finding,
)
from quantbench.errors import ConfigError, HarnessError
from quantbench.hostfacts import (
    DockerFacts,
    GpuFacts,
    ImageFacts,
    docker_facts,
    gpu_facts,
    image_facts,
    port_free,
    toolkit_hook,
)

__all__ = ["Check", "Host", "Plan", "PlannedService", "add_parser", "diagnose", "run_doctor"]

Status = Literal["ok", "warn", "fail", "skip"]
DOCKER_MIN = (20, 10)  # GPU device requests exist since 19.03; our compose texts come from 20.10
COMPOSE_MIN = (2, 30)  # `up --wait --wait-timeout`, `config --format json`, `gpus:` (STACKS 4)
_GIB = 1024**3
# Disk each image takes once pulled or built, for an image not on this host yet (GB; vLLM from
# its published download sizes, about 9 GB for CUDA 13 and 11 GB for -cu129, unpacked about
# twice; the others are estimates). docs/gpu-hosts.md, "Disk".
_IMAGE_GB = {"vllm/vllm-openai": 20, "text-generation-inference": 15, "quantbench-exllamav2": 15}
_MODEL_GB = {"fp16": 16}  # a 7-8B model; 4-bit forms about 6 GB
_MODEL_GB_4BIT = 6


@dataclass(frozen=True)
class Check:
    """One row: what was checked, how it went, what was found, and what to do if it failed."""

    name: str
    status: Status
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class PlannedService:
    """A compose service the run will start, as compose resolved it."""

    name: str
    stack: str | None
    quant: str | None
    image: str | None
    dockerfile: tuple[str, str] | None  # (text, path) of a locally built image
    gpu: str | None  # the device id it will run on; None: no GPU
    flags: dict[str, str]
    ports: tuple[tuple[str, int], ...]
    secrets: tuple[str, ...]
    model: str | None = None
    running: bool = False
    cache_path: str | None = None  # host path of its model cache, when a bind mount


@dataclass(frozen=True)
class Plan:
    """What would start: `together` (a profile at once) or one service at a time."""

    services: tuple[PlannedService, ...]
    together: bool
    label: str
    secret_files: dict[str, str] = field(default_factory=dict)


def _disk_free(path: str) -> int | None:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


@dataclass
class Host:
    """Everything the doctor may touch on this machine; tests replace any part."""

    runner: Runner = subprocess.run
    docker: str = "docker"
    nvidia_smi: str = "nvidia-smi"
    which: Callable[..., str | None] = shutil.which
    port_free: Callable[[str, int], bool] = port_free
    disk_free: Callable[[str], int | None] = _disk_free
    prober: Prober = field(default_factory=HttpProber)
    probe_timeout_s: float = 20.0


# ---------------------------------------------------------------- host checks


def _version_text(version: tuple[int, ...]) -> str:
    return ".".join(str(part) for part in version)


def check_docker(docker: DockerFacts) -> Check:
    if docker.server is None:
        error = docker.error or "unknown error"
        if docker.client is None and "not found" in error:
            what, fix = "no Docker", "install Docker Engine >= 20.10 with the Compose plugin"
        elif "permission denied" in error.lower():
            what = "Docker refuses this user"
            fix = (
                "add the user to the `docker` group (`sudo usermod -aG docker $USER`, log in again)"
            )
        else:
            what = "no Docker engine"
            fix = "start it (`sudo systemctl start docker`); check DOCKER_HOST"
        return Check("Docker", "fail", f"{what}: {error}", fix)
    if parse_version(docker.server)[:2] < DOCKER_MIN:
        return Check(
            "Docker",
            "fail",
            f"engine {docker.server}",
            f"upgrade Docker Engine to >= {_version_text(DOCKER_MIN)}",
        )
    return Check("Docker", "ok", f"engine {docker.server}, CLI {docker.client}")


def check_compose(docker: DockerFacts) -> Check:
    fix = (
        f"install the Docker Compose plugin >= {_version_text(COMPOSE_MIN)} (docker-compose-plugin)"
    )
    if docker.compose is None:
        said = f"`docker compose version` says: {docker.compose_error}"
        return Check("Docker Compose", "fail", f"no Compose v2 plugin ({said})", fix)
    if parse_version(docker.compose)[:2] < COMPOSE_MIN:
        return Check("Docker Compose", "fail", f"version {docker.compose}", fix)
    return Check("Docker Compose", "ok", f"version {docker.compose}")


def check_toolkit(docker: DockerFacts, hook: str | None) -> Check:
    """Docker hands out GPUs through nvidia-container-runtime-hook (or a CDI spec)."""
    cdi = [device for device in docker.cdi_devices if device.startswith("nvidia.com/gpu")]
    if hook or "nvidia" in docker.runtimes or cdi:
        found = hook or ("the nvidia runtime" if "nvidia" in docker.runtimes else "CDI devices")
        return Check("NVIDIA Container Toolkit", "ok", f"found {found}")
    return Check(
        "NVIDIA Container Toolkit",
        "fail",
        "not installed: Docker cannot hand out a GPU (no nvidia-container-runtime-hook)",
        "install nvidia-container-toolkit, then `sudo nvidia-ctk runtime configure "
        "--runtime=docker && sudo systemctl restart docker` (docs/gpu-hosts.md)",
    )


def check_gpus(gpus: GpuFacts) -> Check:
    if not gpus.gpus:
        return Check(
            "GPUs",
            "fail",
            f"no GPU: {gpus.error}",
            "install the NVIDIA driver (`nvidia-smi` must list the GPUs); without a GPU, "
            "`quantbench demo` and the compose `sim` profile run on simulators",
        )
    listed = "; ".join(
        f"{g.index} {g.name} ({g.memory_free_mib / 1024:.0f}/{g.memory_total_mib / 1024:.0f} "
        f"GiB free" + (f", sm {g.compute_cap})" if g.compute_cap else ")")
        for g in gpus.gpus
    )
    return Check("GPUs", "ok", f"driver {gpus.driver}, CUDA {gpus.cuda}: {listed}")


# ---------------------------------------------------------------- per-service checks


def image_needs(service: PlannedService, images: dict[str, ImageFacts]) -> ImageNeeds | None:
    """What the service's image needs: from the pulled image itself, else its Dockerfile,
    else what is known of the pinned tags."""
    image = service.image or ""
    pulled = images.get(image)
    if pulled is not None and pulled.present:
        needs = image_env_needs(pulled.env, image)
        if needs is not None:
            return needs
    if service.dockerfile is not None:
        return dockerfile_needs(*service.dockerfile)
    return known_image_needs(image)


def check_driver(service: PlannedService, needs: ImageNeeds | None, gpus: GpuFacts) -> Check:
    """The driver against what the image needs (libnvidia-container's own rule)."""
    name = f"{service.name}: driver for its image"
    if not gpus.gpus or gpus.driver is None:
        return Check(name, "skip", "no GPU (see GPUs)")
    if needs is None or needs.requirement is None:
        return Check(
            name,
            "warn",
            f"{service.image}: what it needs is not known here",
            f"pull or build it (`docker compose pull {service.name}`) and rerun the doctor",
        )
    gpu = gpus.find(service.gpu or "") or gpus.gpus[0]
    starts, compat = needs.requirement.satisfied_by(
        gpus.driver, gpus.cuda or "", gpu_brands(gpu.name), gpu.compute_cap
    )
    cuda = needs.cuda or "?"
    driver = driver_for_cuda(cuda)
    found = (
        f"needs CUDA {cuda} (driver >= {driver}); driver {gpus.driver} supports CUDA {gpus.cuda}"
    )
    if starts and compat:
        return Check(name, "ok", f"{found}: starts through forward compatibility ({gpu.name})")
    if starts:
        return Check(name, "ok", found)
    fix = f"upgrade the NVIDIA driver to >= {driver}"
    if service.stack == "vllm" and cuda.startswith("13"):
        cu129 = "VLLM_IMAGE=vllm/vllm-openai:v0.33.0-cu129 in .env (CUDA 12.9"
        if parse_version(gpus.driver) >= parse_version(driver_for_cuda("12.9") or ""):
            fix = f"set {cu129}, which this driver runs), or " + fix
        else:
            fix += f"; {cu129} needs >= {driver_for_cuda('12.9')})"
    return Check(name, "fail", f"{found}: the container would not start", fix)


def check_arch(service: PlannedService, needs: ImageNeeds | None, gpus: GpuFacts) -> Check | None:
    gpu = gpus.find(service.gpu or "")
    if gpu is None or gpu.compute_cap is None or needs is None or needs.arch_list is None:
        return None
    name = f"{service.name}: GPU architecture"
    built = " ".join(needs.arch_list)
    if arch_supported(gpu.compute_cap, needs.arch_list):
        return Check(name, "ok", f"{gpu.name} (sm {gpu.compute_cap}); kernels for {built}")
    return Check(
        name,
        "fail",
        f"{gpu.name} is compute capability {gpu.compute_cap}; its kernels are built for {built}",
        "run this stack on a GPU it was built for (docs/gpu-hosts.md, GPU architectures)",
    )


def check_gpu(service: PlannedService, gpus: GpuFacts) -> Check:
    """The GPU id exists and has the memory the service will claim at start."""
    name = f"{service.name}: GPU {service.gpu}"
    if not gpus.gpus:
        return Check(name, "skip", "no GPU (see GPUs)")
    gpu = gpus.find(service.gpu or "")
    if gpu is None:
        have = ", ".join(g.index for g in gpus.gpus)
        return Check(
            name,
            "fail",
            f"no GPU {service.gpu} on this host (have {have})",
            "set its *_GPU id in .env to one of these; on a single GPU start one service at a "
            "time (`quantbench run`, or GPU_ID=0 docker compose up SERVICE)",
        )
    free_gib, total_gib = gpu.memory_free_mib / 1024, gpu.memory_total_mib / 1024
    if service.running:
        return Check(name, "ok", f"{gpu.name}; the service is already running on it")
    share = service.flags.get("--gpu-memory-utilization")
    if service.stack == "vllm" and share:
        needed = float(share) * total_gib
        detail = f"vLLM claims {float(share):.2f} x {total_gib:.0f} = {needed:.1f} GiB"
        if free_gib >= needed:
            return Check(name, "ok", f"{detail}; {free_gib:.1f} GiB free")
        return Check(
            name,
            "fail",
            f"{detail} but only {free_gib:.1f} GiB is free: vLLM refuses to start",
            "stop what holds the GPU (`nvidia-smi` lists it) or lower "
            "VLLM_GPU_MEMORY_UTILIZATION in .env",
        )
    if free_gib < 0.9 * total_gib:
        return Check(
            name,
            "warn",
            f"{total_gib - free_gib:.1f} of {total_gib:.0f} GiB already in use: it sizes its KV "
            "cache from what is free, so results will not compare with an idle GPU",
            "stop what holds the GPU (`nvidia-smi` lists it)",
        )
    return Check(name, "ok", f"{gpu.name}; {free_gib:.1f} of {total_gib:.0f} GiB free")


def check_sharing(plan: Plan) -> Check:
    """No two services started together on one GPU."""
    on_gpu: dict[str, list[str]] = defaultdict(list)
    for service in plan.services:
        if service.gpu is not None:
            on_gpu[service.gpu].append(service.name)
    if not on_gpu:
        return Check("GPU sharing", "skip", "no GPU service selected")
    if not plan.together:
        return Check(
            "GPU sharing", "ok", f"one service at a time, on GPU {', '.join(sorted(on_gpu))}"
        )
    shared = {gpu: names for gpu, names in on_gpu.items() if len(names) > 1}
    if not shared:
        return Check("GPU sharing", "ok", f"{plan.label}: one GPU per service")
    listed = "; ".join(f"GPU {gpu}: {', '.join(names)}" for gpu, names in sorted(shared.items()))
    return Check(
        "GPU sharing",
        "fail",
        f"{plan.label} would start several servers on one GPU ({listed}), each claiming most "
        "of its memory",
        "give each service its own *_GPU id in .env (and leave GPU_ID unset), or start one "
        "service at a time (`quantbench run` does)",
    )


def check_ports(plan: Plan, free: Callable[[str, int], bool]) -> list[Check]:
    checks = []
    for service in plan.services:
        for host, port in service.ports:
            name = f"{service.name}: port {host}:{port}"
            if service.running:
                checks.append(Check(name, "ok", "held by the service itself (already running)"))
            elif free(host, port):
                checks.append(Check(name, "ok", "free"))
            else:
                checks.append(
                    Check(
                        name,
                        "fail",
                        "in use by another program",
                        f"stop it (`ss -ltnp 'sport = :{port}'` names it) or change this "
                        "service's *_PORT in .env",
                    )
                )
    return checks


def check_secret(name: str, path: str, needs_value: bool) -> Check:
    """A compose secret file: present, a file, readable by the containers' non-root users."""
    label = f"secret {name}"
    try:
        info = os.stat(path)
    except OSError as exc:
        return Check(
            label,
            "fail",
            f"{path}: {exc.strerror or exc}",
            f"create it (empty means none for hf_token and api_key): `touch {path} && chmod 644 "
            f"{path}` (docs/gpu-hosts.md, Set up)",
        )
    if not stat.S_ISREG(info.st_mode):
        return Check(label, "fail", f"{path} is not a file", f"replace it with a file: {path}")
    if not info.st_mode & stat.S_IROTH or not os.access(path, os.R_OK):
        return Check(
            label,
            "fail",
            f"{path} is mode {stat.filemode(info.st_mode)}: the containers read it as their own "
            "(non-root) users and cannot",
            f"chmod 644 {path} (keep its directory private: chmod 700)",
        )
    if needs_value and info.st_size == 0:
        return Check(label, "fail", f"{path} is empty", f"write a value into {path}")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return Check(label, "warn", f"{path} is writable by others", f"chmod 644 {path}")
    size = "empty (none)" if info.st_size == 0 else "set"
    return Check(label, "ok", f"{path}: {size}, mode {stat.filemode(info.st_mode)}")


def _image_gb(image: str) -> int:
    return next((gb for key, gb in _IMAGE_GB.items() if key in image), 2)


def check_disk(
    plan: Plan,
    docker: DockerFacts,
    images: dict[str, ImageFacts],
    free: Callable[[str], int | None],
) -> Check:
    """Room for the images not pulled yet (certain) and the models (unless already cached)."""
    if docker.root_dir is None:
        return Check("disk", "skip", "no Docker engine to ask where images go")
    missing = {
        s.image or s.name: _image_gb(s.image or s.name)
        for s in plan.services
        if s.image and not images.get(s.image, ImageFacts(False)).present
    }
    models = {
        s.model: _MODEL_GB.get(s.quant or "", _MODEL_GB_4BIT) for s in plan.services if s.model
    }
    free_bytes = free(docker.root_dir)
    if free_bytes is None:
        return Check("disk", "skip", f"cannot read the free space of {docker.root_dir}")
    free_gb = free_bytes / _GIB
    images_gb, models_gb = sum(missing.values()), sum(models.values())
    detail = (
        f"{free_gb:.0f} GB free in {docker.root_dir}; images to pull or build: about "
        f"{images_gb} GB ({len(missing)}), models: about {models_gb} GB ({len(models)})"
    )
    fix = "free disk space, or move Docker's data-root / HF_CACHE to a larger disk"
    if free_gb < images_gb:
        return Check("disk", "fail", detail, fix)
    if free_gb < images_gb + models_gb:
        return Check("disk", "warn", detail + " unless already downloaded", fix)
    return Check("disk", "ok", detail)


# ---------------------------------------------------------------- the plan


def _flags(command: Sequence[Any]) -> dict[str, str]:
    return dict(
        str(arg).split("=", 1) for arg in command if str(arg).startswith("--") and "=" in str(arg)
    )


def _planned(project: ComposeProject, name: str, gpu: str | None, running: bool) -> PlannedService:
    spec = project.service_config(name)
    labels = spec.get("labels") or {}
    command = [str(arg) for arg in spec.get("command") or []]
    flags = _flags(command)
    dockerfile = None
    build = spec.get("build")
    if build:
        inline = build.get("dockerfile_inline")
        path = Path(build.get("context", ".")) / build.get("dockerfile", "Dockerfile")
        try:
            text = inline or path.read_text()
            dockerfile = (text, "(inline)" if inline else str(path))
        except OSError:
            dockerfile = None
    devices = spec.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices")
    ids = [str(i) for d in devices or [] for i in d.get("device_ids") or []]
    model = flags.get("--model-id") or next(
        (arg for arg in command if not arg.startswith("-")), None
    )
    if name == "exllamav2":
        model = flags.get("--model-dir")
    cache = next(
        (v["source"] for v in spec.get("volumes") or [] if v.get("type") == "bind"
         and v.get("target") in ("/root/.cache/huggingface", "/data", "/models")),
        None,
    )  # fmt: skip
    return PlannedService(
        name=name,
        stack=labels.get("io.quantbench.stack"),
        quant=labels.get("io.quantbench.quant"),
        image=spec.get("image"),
        dockerfile=dockerfile,
        gpu=(gpu if gpu is not None else ids[0]) if ids else None,
        flags=flags,
        ports=tuple(
            (str(p.get("host_ip") or "0.0.0.0"), int(p["published"]))
            for p in spec.get("ports") or []
            if p.get("published")
        ),
        secrets=tuple(str(s.get("source")) for s in spec.get("secrets") or []),
        model=model if spec.get("deploy") else None,
        running=running,
        cache_path=cache,
    )


def build_plan(
    project: ComposeProject,
    config: BenchConfig | None,
    profiles: Sequence[str],
    running: Callable[[str], bool],
) -> Plan:
    """The services a run would start: a config's compose targets (one at a time, on the
    solo GPU), the services of `profiles` (together), or every GPU service (one at a time)."""
    services = project.config().get("services", {})
    if profiles:
        known = sorted({p for spec in services.values() for p in spec.get("profiles") or []})
        unknown = [p for p in profiles if p not in known]
        if unknown:
            raise ConfigError(
                f"--profile {unknown[0]}: no such profile in {project.compose_file} "
                f"(have: {', '.join(known)})"
            )
        names = [
            n for n, s in services.items()
            if not s.get("profiles") or set(s["profiles"]) & set(profiles)
        ]  # fmt: skip
        planned = [_planned(project, n, None, running(n)) for n in sorted(names)]
        label = "--profile " + " --profile ".join(profiles)
        together = True
    else:
        if config is not None:
            names = list(dict.fromkeys(t.compose for t in config.targets if t.compose))
            label = "the compose targets of the config"
        else:
            names = [
                n for n, s in services.items()
                if s.get("deploy", {}).get("resources", {}).get("reservations")
            ]  # fmt: skip
            label = "every GPU service of the compose file"
        for name in names:
            project.service_config(name)  # an unknown service is one clear line
        solo = project.solo_gpu()
        planned = []
        for name in names:
            is_running = running(name)
            planned.append(_planned(project, name, None if is_running else solo, is_running))
        together = False
    secrets = project.config().get("secrets") or {}
    used = {name for service in planned for name in service.secrets}
    files = {name: str(secrets[name].get("file")) for name in sorted(used) if name in secrets}
    return Plan(tuple(planned), together, label, files)


# ---------------------------------------------------------------- putting it together


def _target_checks(config: BenchConfig, plan: Plan, host: Host) -> Iterable[Check]:
    by_name = {service.name: service for service in plan.services}
    for target in config.targets:
        name = f"target {target.name}"
        if target.sim is not None:
            yield Check(name, "ok", "a simulator: nothing to check on this host")
            continue
        context: Context | None = None
        if target.compose is not None:
            service = by_name.get(target.compose)
            context = compose_context(service.stack, service.flags) if service else None
        else:
            url = str(target.url).rstrip("/")
            problem = host.prober.generating(
                target, url, config.workload.endpoint, host.probe_timeout_s
            )
            if problem:
                yield Check(
                    name,
                    "fail",
                    f"{url} does not generate: {problem}",
                    "start the server (and wait until `/health` answers 200), or fix `url`, "
                    "`model` or `api_key_env` in the config",
                )
                continue
            yield Check(name, "ok", f"{url} completed a probe generation")
            context = host.prober.context(url, target.api)
        if context is None:
            yield Check(f"{name}: limits", "skip", "the server does not say its context")
            continue
        status, finding, fix = limits_finding(config.workload, context)
        yield Check(f"{name}: limits", status, finding, fix)  # type: ignore[arg-type]


def diagnose(
    config: BenchConfig | None,
    compose_file: Path,
    profiles: Sequence[str],
    host: Host,
) -> list[Check]:
    """Every check, in the order a user fixes them: host, then services, then targets."""
    docker = docker_facts(host.docker, host.runner)
    gpus = gpu_facts(host.nvidia_smi, host.runner)
    checks = [
        check_docker(docker),
        check_compose(docker),
        check_toolkit(docker, toolkit_hook(host.which)),
        check_gpus(gpus),
    ]
    needs_compose = config is None or any(t.compose for t in config.targets) or profiles
    plan = Plan((), False, "no compose service")
    if needs_compose and not compose_file.is_file():
        checks.append(
            Check(
                "compose services",
                "skip",
                f"no {compose_file}",
                "run from the quantbench checkout, or give --compose-file",
            )
        )
    elif needs_compose:
        project = ComposeProject(compose_file, docker=host.docker, runner=host.runner)
        if docker.compose is None:
            checks.append(
                Check(
                    "compose services",
                    "skip",
                    f"{compose_file} not read: no Docker Compose (see above)",
                )
            )
        else:
            try:
                project.config()
            except HarnessError as exc:
                raise ConfigError(str(exc)) from exc

            def running(service: str) -> bool:
                if docker.server is None:
                    return False
                try:
                    return project.is_running(service)
                except HarnessError:
                    return False

            plan = build_plan(project, config, profiles, running)
            checks.extend(_service_checks(plan, docker, gpus, host))
    if config is not None:
        checks.extend(_target_checks(config, plan, host))
    return checks


def _service_checks(plan: Plan, docker: DockerFacts, gpus: GpuFacts, host: Host) -> list[Check]:
    images = (
        image_facts(host.docker, [s.image for s in plan.services if s.image], host.runner)
        if docker.server
        else {}
    )
    checks = []
    for service in plan.services:
        if service.gpu is None:
            continue
        needs = image_needs(service, images)
        checks.append(check_driver(service, needs, gpus))
        arch = check_arch(service, needs, gpus)
        if arch is not None:
            checks.append(arch)
        checks.append(check_gpu(service, gpus))
    checks.append(check_sharing(plan))
    checks.extend(check_ports(plan, host.port_free))
    for name, path in plan.secret_files.items():
        checks.append(check_secret(name, path, needs_value=name == "grafana_admin_password"))
    checks.append(check_disk(plan, docker, images, host.disk_free))
    return checks


_STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}


def render(checks: Sequence[Check], console: Console) -> None:
    table = Table(title="quantbench doctor", title_justify="left", expand=False)
    table.add_column("check", overflow="fold")
    table.add_column("", no_wrap=True)
    table.add_column("finding", overflow="fold")
    table.add_column("fix", overflow="fold")
    for check in checks:
        status = check.status.upper() if check.status in ("warn", "fail") else check.status
        table.add_row(check.name, f"[{_STYLE[check.status]}]{status}[/]", check.detail, check.fix)
    if not console.is_terminal:  # a file or CI log: rich would wrap at 80 columns
        console = Console(file=console.file, width=max(console.width, 160), highlight=False)
    console.print(table)
    failed = sum(check.status == "fail" for check in checks)
    warned = sum(check.status == "warn" for check in checks)
    verdict = (
        "a run can start"
        if not failed
        else "a run cannot start: fix the failures above, then rerun `quantbench doctor`"
    )
    console.print(f"{len(checks)} checks, {failed} failed, {warned} warnings: {verdict}")


_HELP = """Check this host (and a bench.yaml) before a run: Docker and Compose versions, the NVIDIA
Container Toolkit, the driver against what each image needs, the GPU ids and the memory each
service claims, GPUs shared within a profile, host ports, secret files, disk for images and
models, `url:` targets reachable and generating, and the workload's lengths within each
target's context. Prints a table with a fix for every failure.

examples:
  quantbench doctor                     every GPU service of ./docker-compose.yml, one at a time
  quantbench doctor bench.yaml          the targets of a config, as `quantbench run` starts them
  quantbench doctor --profile vllm      a profile started at once (one GPU per service)

exit codes: 0 a run can start (warnings allowed); 1 a check failed; 2 bad input.
"""


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    doctor = commands.add_parser(
        "doctor",
        help="check this host and a config before a run (preflight)",
        description=_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    doctor.add_argument("config", type=Path, nargs="?", help="bench.yaml to check (optional)")
    doctor.add_argument(
        "--profile",
        action="append",
        default=[],
        metavar="NAME",
        help="check the services of this compose profile as started together (repeatable)",
    )
    doctor.add_argument(
        "--compose-file",
        type=Path,
        default=None,
        help="compose file (default: the config's compose_file, else ./docker-compose.yml)",
    )


def run_doctor(args: argparse.Namespace, console: Console, host: Host | None = None) -> int:
    """Check, print the table, return 0 (a run can start) or 1; bad input raises ConfigError."""
    config = load_config(args.config) if args.config is not None else None
    compose_file = args.compose_file or (
        config.compose_file if config is not None else Path("docker-compose.yml")
    )
    named = (
        args.compose_file is not None
        or args.profile
        or (config is not None and any(t.compose for t in config.targets))
    )
    if named and not compose_file.is_file():
        raise ConfigError(f"{compose_file}: no such compose file (give --compose-file)")
    checks = diagnose(config, compose_file.resolve(), args.profile, host or Host())
    render(checks, console)
    return 1 if any(check.status == "fail" for check in checks) else 0
