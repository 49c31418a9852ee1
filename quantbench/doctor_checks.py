"""The checks of `quantbench doctor`: small pure functions from gathered facts to a `Check`
row (status, finding, and the fix for a failure). quantbench/doctor.py gathers the facts and
the plan of what would start, runs these, and prints the table.
"""

from __future__ import annotations

import os
import stat
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

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
from quantbench.doctor_targets import compose_context
from quantbench.hostfacts import DockerFacts, GpuFacts, ImageFacts

__all__ = [
    "Check",
    "Plan",
    "PlannedService",
    "Status",
    "check_arch",
    "check_compose",
    "check_disk",
    "check_docker",
    "check_driver",
    "check_gpu",
    "check_gpus",
    "check_limits_equal",
    "check_ports",
    "check_secret",
    "check_sharing",
    "check_toolkit",
    "image_needs",
]

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


def check_limits_equal(plan: Plan) -> Check | None:
    """The stacks compared run with the same context and prompt limit (.env, engine limits)."""
    limits = {s.name: compose_context(s.stack, s.flags) for s in plan.services if s.gpu is not None}
    known = {name: context for name, context in limits.items() if context is not None}
    if len(known) < 2:
        return None
    if len(set(known.values())) == 1:
        (context,) = set(known.values())
        return Check("engine limits", "ok", f"every service: context {context.total}, prompts "
                     f"up to {context.max_input}")  # fmt: skip
    listed = "; ".join(f"{n} {c.total}/{c.max_input}" for n, c in sorted(known.items()))
    return Check(
        "engine limits",
        "warn",
        f"contexts/prompt limits differ ({listed}): the stacks would not be compared alike",
        "set MAX_MODEL_LEN, and MAX_INPUT_TOKENS = MAX_MODEL_LEN - 1, in .env",
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
