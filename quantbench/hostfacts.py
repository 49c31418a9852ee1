"""Facts about the host that `quantbench doctor` judges: Docker, Compose, the NVIDIA driver and
GPUs, the NVIDIA Container Toolkit, local images, free ports and disk.

Everything that runs a program goes through an injectable `Runner` (the `subprocess.run`
subset quantbench/compose.py uses), so tests hand in a fake `docker` and `nvidia-smi`. A fact
that cannot be read is recorded with the reason, never raised: the doctor reports it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from quantbench.compose import Runner

__all__ = [
    "DockerFacts",
    "Gpu",
    "GpuFacts",
    "ImageFacts",
    "docker_facts",
    "gpu_facts",
    "image_facts",
    "port_free",
    "toolkit_hook",
]

_TIMEOUT_S = 30.0
# Docker registers its "nvidia" device driver only when this binary is on the daemon's PATH
# (moby daemon/nvidia_linux.go); the NVIDIA Container Toolkit installs it.
_HOOK = "nvidia-container-runtime-hook"
_HOOK_DIRS = ("/usr/bin", "/usr/local/bin", "/usr/sbin")


def _run(runner: Runner, argv: Sequence[str]) -> tuple[int, str, str]:
    """(exit status, stdout, stderr); 127 when the program is missing, 124 when it hangs."""
    try:
        done = runner(
            list(argv), capture_output=True, text=True, env=None, timeout=_TIMEOUT_S, check=False
        )
    except FileNotFoundError:
        return 127, "", f"{argv[0]}: not found"
    except (subprocess.TimeoutExpired, OSError) as exc:
        return 124, "", f"{argv[0]}: {exc}"
    return done.returncode, done.stdout or "", done.stderr or ""


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "(no output)")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


@dataclass(frozen=True)
class DockerFacts:
    """The Docker CLI and engine; `error` says why the engine could not be asked."""

    client: str | None = None
    server: str | None = None
    error: str | None = None
    compose: str | None = None
    compose_error: str | None = None
    runtimes: tuple[str, ...] = ()
    cdi_devices: tuple[str, ...] = ()
    root_dir: str | None = None


def docker_facts(docker: str, runner: Runner) -> DockerFacts:
    rc, out, err = _run(runner, [docker, "version", "--format", "{{json .}}"])
    if rc == 127:
        return DockerFacts(error=f"`{docker}` not found")
    version = _json(out)
    client = _dig(version, "Client", "Version")
    server = _dig(version, "Server", "Version")
    error = None if rc == 0 and server else _last_line(err or out)
    rc, out, err = _run(runner, [docker, "compose", "version", "--short"])
    compose = out.strip().removeprefix("v") if rc == 0 and out.strip() else None
    compose_error = None if compose else _first_line(err or out)
    runtimes: tuple[str, ...] = ()
    cdi: tuple[str, ...] = ()
    root_dir = None
    if server:
        rc, out, _ = _run(runner, [docker, "info", "--format", "{{json .}}"])
        info = _json(out) if rc == 0 else {}
        runtimes = tuple(sorted(info.get("Runtimes") or {}))
        cdi = tuple(str(d.get("ID", "")) for d in info.get("DiscoveredDevices") or [])
        root_dir = info.get("DockerRootDir") or None
    return DockerFacts(client, server, error, compose, compose_error, runtimes, cdi, root_dir)


@dataclass(frozen=True)
class Gpu:
    index: str
    uuid: str
    name: str
    memory_total_mib: int
    memory_used_mib: int
    memory_free_mib: int
    compute_cap: str | None = None


@dataclass(frozen=True)
class GpuFacts:
    """The driver, the CUDA version it supports (nvidia-smi's "CUDA Version") and the GPUs;
    `error` says why there are none."""

    gpus: tuple[Gpu, ...] = ()
    driver: str | None = None
    cuda: str | None = None
    error: str | None = None

    def find(self, gpu_id: str) -> Gpu | None:
        """A GPU by nvidia-smi index or UUID, as compose's `device_ids` name them."""
        return next((g for g in self.gpus if gpu_id in (g.index, g.uuid)), None)


_QUERY = "index,uuid,name,memory.total,memory.used,memory.free,driver_version"


def gpu_facts(nvidia_smi: str, runner: Runner) -> GpuFacts:
    argv = [nvidia_smi, f"--query-gpu={_QUERY},compute_cap", "--format=csv,noheader,nounits"]
    rc, out, err = _run(runner, argv)
    if rc != 0 and "compute_cap" in (err + out):  # drivers before R510 lack the field
        argv[1] = f"--query-gpu={_QUERY}"
        rc, out, err = _run(runner, argv)
    if rc == 127:
        return GpuFacts(error=f"`{nvidia_smi}` not found (no NVIDIA driver)")
    if rc != 0:
        return GpuFacts(error=_last_line(err or out))
    gpus, driver = [], None
    for line in out.splitlines():
        cells = [cell.strip() for cell in line.split(",")]
        if len(cells) < 7:
            continue
        try:
            total, used, free = (int(float(cells[i])) for i in (3, 4, 5))
        except ValueError:
            continue
        driver = cells[6]
        cap = cells[7] if len(cells) > 7 and re.match(r"^\d+\.\d+$", cells[7]) else None
        gpus.append(Gpu(cells[0], cells[1], cells[2], total, used, free, cap))
    if not gpus:
        return GpuFacts(error="nvidia-smi lists no GPU")
    rc, out, _ = _run(runner, [nvidia_smi])
    match = re.search(r"CUDA Version:\s*(\d+\.\d+)", out)
    return GpuFacts(tuple(gpus), driver, match.group(1) if match else None)


def toolkit_hook(which: Callable[[str, Any], str | None] = shutil.which) -> str | None:
    """Where nvidia-container-runtime-hook is, on PATH or in the usual system directories."""
    path = os.pathsep.join([os.environ.get("PATH", ""), *_HOOK_DIRS])
    return which(_HOOK, path=path)  # type: ignore[call-arg]


@dataclass(frozen=True)
class ImageFacts:
    """A local image: present or not, its size on disk and its environment."""

    present: bool
    size_bytes: int = 0
    env: dict[str, str] = field(default_factory=dict)


def image_facts(docker: str, images: Sequence[str], runner: Runner) -> dict[str, ImageFacts]:
    facts: dict[str, ImageFacts] = {}
    for image in dict.fromkeys(images):
        rc, out, _ = _run(runner, [docker, "image", "inspect", "--format", "{{json .}}", image])
        data = _json(out.strip().splitlines()[0]) if rc == 0 and out.strip() else {}
        if not data:
            facts[image] = ImageFacts(present=False)
            continue
        env = dict(item.split("=", 1) for item in _dig(data, "Config", "Env") or [] if "=" in item)
        facts[image] = ImageFacts(True, int(data.get("Size") or 0), env)
    return facts


def port_free(host: str, port: int) -> bool:
    """Whether a listener could bind host:port now (SO_REUSEADDR, as servers bind)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _json(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _dig(data: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)  # type: ignore[assignment]
    return data
