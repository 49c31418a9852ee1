"""The ExLlamaV2 image can import and serve its server: with only the modules its
`requirements.txt` brings (and the standard library) importable, the server imports, and its
HTTP layer starts and answers over a fake engine; `yaml` and `services.sim` stay out.
Every third-party module the server imports anywhere (lazily too) is pinned there."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

from packaging.requirements import Requirement

from tests.procs import REPO_ROOT
from tests.services.import_graph import read_services

REQUIREMENTS = REPO_ROOT / "services" / "exllamav2" / "requirements.txt"
# In the image but not installed here (GPU builds): their import names are their names.
_ABSENT_HERE = {"torch": "torch", "exllamav2": "exllamav2", "flash_attn": "flash-attn"}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pinned() -> dict[str, Requirement]:
    lines = REQUIREMENTS.read_text().splitlines()
    reqs = [Requirement(line) for line in lines if line.strip() and not line.startswith("#")]
    return {_normal(r.name): r for r in reqs}


def _closure(names: set[str]) -> set[str]:
    """The pinned distributions and everything they require (markers for this Python)."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue  # torch, exllamav2, flash-attn: not installed on this machine
        for text in requires:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(_normal(req.name))
    return seen


def _import_names(distributions: set[str]) -> set[str]:
    by_dist: dict[str, set[str]] = {}
    for module, dists in importlib.metadata.packages_distributions().items():
        for dist in dists:
            by_dist.setdefault(_normal(dist), set()).add(module)
    names = {m for d in distributions for m in by_dist.get(d, ())}
    return names | set(_ABSENT_HERE)


def _server_modules() -> dict[str, Path]:
    """`services.exllamav2.*` and the shared `services/*.py` modules (what the image copies)."""
    return {
        name: info.path
        for name, info in read_services().items()
        if name.startswith("services.exllamav2")
        or (info.path.parent.name == "services" and info.path.stem != "__init__")
        or name == "services"
    }


def test_requirements_pin_every_module_the_server_imports() -> None:
    pinned = _pinned()
    assert "tokenizers" in pinned, "exllamav2 0.3.2 imports tokenizers without declaring it"
    providers = importlib.metadata.packages_distributions()
    missing = set()
    for path in _server_modules().values():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                tops = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                tops = {node.module.split(".")[0]}
            else:
                continue
            for top in tops - set(sys.stdlib_module_names) - {"services", "__future__"}:
                dists = providers.get(top) or [_ABSENT_HERE.get(top, top)]
                if not any(_normal(d) in pinned for d in dists):
                    missing.add(f"{path.name}: {top}")
    assert not missing, f"not in {REQUIREMENTS.name}: {sorted(missing)}"


_SCRIPT = r"""
import asyncio, importlib.abc, importlib.machinery, json, sys
allowed = set(json.loads(sys.argv[1]))
shared = set(json.loads(sys.argv[2]))
stdlib_dirs = tuple(json.loads(sys.argv[3]))
blocked = []

def in_stdlib(name, path):
    # private platform modules (e.g. _sysconfigdata_*) are not in sys.stdlib_module_names
    spec = importlib.machinery.PathFinder.find_spec(name, path)
    origin = (spec and spec.origin) or ""
    return origin.startswith(stdlib_dirs) and "site-packages" not in origin

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top == "services":
            ok = name == "services" or name.startswith("services.exllamav2") or name in shared
        else:
            ok = top in allowed or top in sys.stdlib_module_names or in_stdlib(name, path)
        if not ok:
            blocked.append(name)
            raise ModuleNotFoundError(f"not in the image: {name}", name=name)
        return None

sys.meta_path.insert(0, Blocker())

import services.exllamav2, services.exllamav2.app, services.exllamav2.__main__
import services.exllamav2.exl2_engine
from aiohttp import ClientSession, web
from prometheus_client import CollectorRegistry
from services.exllamav2 import AppConfig, JobResult, JobStats, create_app


class Job:
    def __aiter__(self):
        return self._results()

    async def _results(self):
        yield JobResult("started")
        end = JobStats("max_new_tokens", 2, 1, 0, 0.0, 0.0, 0.0)
        yield JobResult("streaming", " a", 1)
        yield JobResult("streaming", " b", 1, end=end)

    async def cancel(self):
        pass


class Engine:
    model_name, max_seq_len, engine_version, is_loaded = "m", 64, "fake", True
    async def load(self): pass
    async def close(self): pass
    def encode(self, text): return [1] * len(text.split())
    def encode_chat(self, messages): return [1, 2, 3]
    def enqueue(self, request): return Job()
    def num_running_jobs(self): return 0
    def num_pending_jobs(self): return 0
    def kv_cache_usage(self): return 0.0
    def info(self): return {}


async def main():
    runner = web.AppRunner(create_app(Engine(), AppConfig(), CollectorRegistry(), environ={}))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = "http://127.0.0.1:%d" % runner.addresses[0][1]
    out = {}
    async with ClientSession() as http:
        async with http.get(url + "/health") as r:
            out["health"] = r.status
        body = {"prompt": "x y", "max_tokens": 2, "stream": True}
        async with http.post(url + "/v1/completions", json=body) as r:
            out["stream"] = (r.status, (await r.read()).decode().count("data: "))
        async with http.get(url + "/metrics") as r:
            out["metrics"] = r.status
    await runner.cleanup()
    return out

out = asyncio.run(main())
out["blocked"] = blocked
out["loaded"] = sorted(m for m in sys.modules if m.split(".")[0] in ("yaml", "torch", "exllamav2")
                       or m.startswith("services.sim"))
print(json.dumps(out))
"""


def test_server_imports_and_serves_with_only_its_image_requirements() -> None:
    allowed = _import_names(_closure(set(_pinned()))) - {"yaml", "_yaml"}
    shared = sorted(n for n, p in _server_modules().items() if p.parent.name == "services")
    paths = sysconfig.get_paths()
    stdlib = json.dumps(sorted({paths["stdlib"], paths["platstdlib"]}))
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, json.dumps(sorted(allowed)), json.dumps(shared), stdlib],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    assert out["health"] == 200 and out["metrics"] == 200
    assert out["stream"] == [200, 3], "two token chunks (the last with its finish), [DONE]"
    assert out["loaded"] == [], "yaml, torch, exllamav2 or the simulator got imported"
    assert not [b for b in out["blocked"] if b.startswith(("services", "yaml"))], out["blocked"]


def test_the_image_copies_that_module_set_and_can_build_the_extension() -> None:
    """The Dockerfile copies exactly what the test above imports from, and installs what
    exllamav2's JIT build needs at first import: a C++ compiler and ninja (nvcc comes with
    the CUDA devel base image), for the architectures in TORCH_CUDA_ARCH_LIST."""
    dockerfile = (REPO_ROOT / "services" / "exllamav2" / "Dockerfile").read_text()
    copies = re.findall(r"^COPY (\S+) (\S+)$", dockerfile, flags=re.MULTILINE)
    sources = {src for src, _ in copies}
    assert sources == {"services/exllamav2/requirements.txt", "services/*.py", "services/exllamav2"}
    assert re.search(r"^FROM nvidia/cuda:\S+-devel-", dockerfile, flags=re.MULTILINE)
    assert "build-essential" in dockerfile and "ninja-build" in dockerfile
    assert re.search(r'^ARG TORCH_CUDA_ARCH_LIST="[0-9.;+PTX]+"$', dockerfile, flags=re.MULTILINE)
