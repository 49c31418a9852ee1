"""What a serving image needs from the host's NVIDIA driver and GPU, and whether a host has it.

Pure data and functions, used by `quantbench doctor` and by compose error messages:

- the minimum Linux driver of each CUDA toolkit (NVIDIA CUDA Toolkit release notes, table
  "CUDA Toolkit and Corresponding Driver Versions");
- `NVIDIA_REQUIRE_CUDA`, the expression NVIDIA's container runtime checks before it starts a
  container ("space-separated constraints are ORed, comma-separated constraints are ANDed",
  NVIDIA Container Toolkit docs): `cuda>=13.0 brand=tesla,driver>=535,driver<536 ...` means
  "a driver that supports CUDA 13.0, or a data-center GPU on an R535 driver", the second
  through the image's forward-compatibility libraries;
- which GPU architectures an image's kernels were built for (`TORCH_CUDA_ARCH_LIST`);
- what the images this project pins need, for when they are not pulled yet (docs/gpu-hosts.md
  cites where each figure was read).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "ImageNeeds",
    "Requirement",
    "arch_supported",
    "dockerfile_needs",
    "driver_for_cuda",
    "gpu_brands",
    "image_env_needs",
    "known_image_needs",
    "parse_version",
]

# CUDA toolkit (GA) -> minimum Linux x86_64 driver.
_MIN_DRIVER: dict[tuple[int, int], str] = {
    (12, 0): "525.60.13",
    (12, 1): "530.30.02",
    (12, 2): "535.54.03",
    (12, 3): "545.23.06",
    (12, 4): "550.54.14",
    (12, 5): "555.42.02",
    (12, 6): "560.28.03",
    (12, 8): "570.26",
    (12, 9): "575.51.03",
    (13, 0): "580.65.06",
    (13, 1): "590.44.01",
}

# Brands as NVIDIA_REQUIRE_CUDA names them. Data-center and professional cards may use the
# forward-compatibility libraries; GeForce and TITAN cards only where an image lists them.
_PRO_BRANDS = [
    *("unknown", "grid", "tesla", "nvidia", "quadro", "quadrortx", "nvidiartx"),
    *("vapps", "vpc", "vcs", "vws", "cloudgaming"),
]
_ALL_BRANDS = [*_PRO_BRANDS, "geforce", "geforcertx", "titan", "titanrtx"]


def parse_version(text: str) -> tuple[int, ...]:
    """`"580.65.06"` -> (580, 65, 6); `"13.0"` -> (13, 0); () when there is no number."""
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def driver_for_cuda(cuda: str) -> str | None:
    """The minimum Linux driver for CUDA `major.minor`, or None if not in the table."""
    key = parse_version(cuda)[:2]
    return _MIN_DRIVER.get((key[0], key[1])) if len(key) == 2 else None


def gpu_brands(name: str) -> set[str]:
    """The NVIDIA_REQUIRE_CUDA brands a GPU of this `nvidia-smi` name may have (a heuristic:
    nvidia-smi's query interface does not print the brand)."""
    lowered = name.lower()
    if "geforce" in lowered:
        return {"geforce", "geforcertx"}
    if "titan" in lowered:
        return {"titan", "titanrtx"}
    if "quadro" in lowered:
        return {"quadro", "quadrortx"}
    if re.search(r"\brtx\b", lowered):
        return {"nvidiartx", "quadrortx"}
    return {"tesla", "nvidia", "unknown"}


def _compare(left: tuple[int, ...], op: str, right: tuple[int, ...]) -> bool:
    size = max(len(left), len(right))
    a = left + (0,) * (size - len(left))
    b = right + (0,) * (size - len(right))
    return {
        ">=": a >= b,
        ">": a > b,
        "<=": a <= b,
        "<": a < b,
        "=": a == b,
        "==": a == b,
    }[op]


_CONSTRAINT = re.compile(r"^(cuda|driver|arch|brand)(>=|<=|==|=|>|<)(.+)$")


@dataclass(frozen=True)
class Requirement:
    """An NVIDIA_REQUIRE_CUDA expression: any clause (all of its constraints) may hold."""

    text: str

    @property
    def clauses(self) -> list[list[tuple[str, str, str]]]:
        clauses = []
        for clause in self.text.split():
            constraints = []
            for part in clause.split(","):
                match = _CONSTRAINT.match(part.strip())
                if match:
                    constraints.append((match.group(1), match.group(2), match.group(3)))
            if constraints:
                clauses.append(constraints)
        return clauses

    @property
    def cuda(self) -> str | None:
        """The CUDA version its first clause names (the toolkit the image was built with)."""
        for clause in self.clauses:
            for key, _, value in clause:
                if key == "cuda":
                    return value
        return None

    def satisfied_by(
        self, driver: str, driver_cuda: str, brands: set[str], arch: str | None = None
    ) -> tuple[bool, bool]:
        """(starts, through forward compatibility) for a host with this driver version, the
        CUDA version it supports (nvidia-smi's "CUDA Version"), GPU brands and architecture."""
        facts = {"driver": parse_version(driver), "cuda": parse_version(driver_cuda)}
        for clause in self.clauses:
            if all(_holds(key, op, value, facts, brands, arch) for key, op, value in clause):
                uses_compat = not any(key == "cuda" for key, _, _ in clause)
                return True, uses_compat
        return (not self.clauses), False


def _holds(
    key: str,
    op: str,
    value: str,
    facts: dict[str, tuple[int, ...]],
    brands: set[str],
    arch: str | None,
) -> bool:
    if key == "brand":
        return value.lower() in brands
    if key == "arch":
        return arch is None or _compare(parse_version(arch), op, parse_version(value))
    return bool(facts[key]) and _compare(facts[key], op, parse_version(value))


def _compat_requirement(cuda: str, branches: tuple[int, ...], brands: list[str]) -> Requirement:
    """The shape of the NVIDIA_REQUIRE_CUDA that NVIDIA's CUDA base images carry."""
    clauses = [f"cuda>={cuda}"] + [
        f"brand={brand},driver>={branch},driver<{branch + 1}"
        for branch in branches
        for brand in brands
    ]
    return Requirement(" ".join(clauses))


def arch_supported(compute_cap: str, arch_list: tuple[str, ...]) -> bool:
    """Whether kernels built for `arch_list` (e.g. "8.0", "9.0+PTX") run on a GPU of this
    compute capability: a cubin for X.y runs on X.z with z >= y; PTX is compiled by the
    driver for any newer GPU (CUDA C++ Programming Guide, "Binary Compatibility")."""
    cap = parse_version(compute_cap)
    if len(cap) < 2:
        return True
    for entry in arch_list:
        built = parse_version(entry.split("+")[0])
        if len(built) < 2:
            continue
        if built[0] == cap[0] and built[1] <= cap[1]:
            return True
        if "+PTX" in entry.upper() and built <= cap[:2]:
            return True
    return False


def _arch_list(text: str) -> tuple[str, ...]:
    return tuple(part for part in re.split(r"[;\s]+", text.strip().strip("\"'")) if part)


@dataclass(frozen=True)
class ImageNeeds:
    """What an image needs: its NVIDIA_REQUIRE_CUDA and the architectures it was built for
    (None: not known here), and where those facts came from."""

    requirement: Requirement | None
    arch_list: tuple[str, ...] | None
    source: str

    @property
    def cuda(self) -> str | None:
        return self.requirement.cuda if self.requirement else None


# vLLM: the unsuffixed release tags are CUDA 13.0 builds from v0.20 on and `-cu129` the
# CUDA 12.9 builds (.buildkite/scripts/publish-release-images.sh); the CUDA 13 image's
# kernels cover 7.5 ... 12.0+PTX (docker/versions.json, TORCH_CUDA_ARCH_LIST). Both CUDA
# 12.9 and 13.0 bases accept data-center drivers of the R535-R570 branches.
_VLLM_TAG = re.compile(r"^(?:docker\.io/)?vllm/vllm-openai:v(\d+)\.(\d+)\.\d+(?:-(cu\d+))?$")
_VLLM_CUDA13_ARCHS = ("7.5", "8.0", "8.6", "8.9", "9.0", "10.0", "11.0", "12.0+PTX")
_COMPAT_BRANCHES = (535, 550, 560, 565, 570)
# TGI 3.3.x: nvidia/cuda:12.4.0-base runtime, kernels for 8.0;8.6;9.0+PTX (its Dockerfile).
_TGI_TAG = re.compile(r"^ghcr\.io/huggingface/text-generation-inference:3\.3\.\d+$")


def known_image_needs(image: str) -> ImageNeeds | None:
    """What one of the pinned images needs, from its tag; None for an image not known here."""
    match = _VLLM_TAG.match(image)
    if match:
        version, suffix = (int(match.group(1)), int(match.group(2))), match.group(3)
        source = f"{image}: vLLM's release tags"
        if suffix == "cu129":
            return ImageNeeds(
                _compat_requirement("12.9", _COMPAT_BRANCHES, _PRO_BRANDS), None, source
            )
        if suffix is None and version >= (0, 20):
            requirement = _compat_requirement("13.0", _COMPAT_BRANCHES, _PRO_BRANDS)
            return ImageNeeds(requirement, _VLLM_CUDA13_ARCHS, source)
        return None
    if _TGI_TAG.match(image):
        requirement = _compat_requirement("12.4", (470, 525, 535), _ALL_BRANDS)
        return ImageNeeds(requirement, ("8.0", "8.6", "9.0+PTX"), f"{image}: TGI's Dockerfile")
    return None


_FROM_CUDA = re.compile(r"^\s*FROM\s+(?:docker\.io/)?nvidia/cuda:(\d+\.\d+)", re.M | re.I)
_ARCH_ENV = re.compile(r"TORCH_CUDA_ARCH_LIST\s*=\s*(\"[^\"]*\"|'[^']*'|\S+)")
_NVIDIA_BASE_COMPAT = {"12.4": ((470, 525, 535), _ALL_BRANDS)}


def dockerfile_needs(text: str, name: str) -> ImageNeeds | None:
    """What an image built from this Dockerfile needs: the CUDA of its `nvidia/cuda` base and
    its TORCH_CUDA_ARCH_LIST; None when it does not start from an nvidia/cuda image."""
    bases = _FROM_CUDA.findall(text)
    if not bases:
        return None
    cuda = bases[-1]
    branches, brands = _NVIDIA_BASE_COMPAT.get(cuda, ((), _ALL_BRANDS))
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    arch = _ARCH_ENV.search(code)
    return ImageNeeds(
        _compat_requirement(cuda, branches, brands),
        _arch_list(arch.group(1)) if arch else None,
        f"{name}: FROM nvidia/cuda:{cuda}",
    )


def image_env_needs(env: dict[str, str], image: str) -> ImageNeeds | None:
    """What a pulled image needs, from its own environment (`docker image inspect`)."""
    text = env.get("NVIDIA_REQUIRE_CUDA")
    if not text:
        return None
    arch = env.get("TORCH_CUDA_ARCH_LIST")
    known = known_image_needs(image)
    arch_list = _arch_list(arch) if arch else (known.arch_list if known else None)
    return ImageNeeds(Requirement(text), arch_list, f"{image}: its NVIDIA_REQUIRE_CUDA")
