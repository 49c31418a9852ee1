"""quantbench/cuda.py: NVIDIA_REQUIRE_CUDA as the container runtime reads it, the driver table,
GPU architectures, and what the pinned images need."""

from __future__ import annotations

import pytest

from quantbench.cuda import (
    Requirement,
    arch_supported,
    dockerfile_needs,
    driver_for_cuda,
    gpu_brands,
    image_env_needs,
    known_image_needs,
)
from tests.procs import REPO_ROOT

# The head of the NVIDIA_REQUIRE_CUDA of nvidia/cuda:12.9 base images.
CUDA_129 = (
    "cuda>=12.9 brand=unknown,driver>=535,driver<536 brand=tesla,driver>=535,driver<536 "
    "brand=tesla,driver>=570,driver<571"
)


@pytest.mark.parametrize(
    ("driver", "cuda", "brands", "expected"),
    [
        ("575.51.03", "12.9", {"geforce"}, (True, False)),  # natively
        ("580.95.05", "13.0", {"geforce"}, (True, False)),
        ("535.183.01", "12.2", {"tesla"}, (True, True)),  # forward compatibility
        ("570.133.20", "12.8", {"tesla"}, (True, True)),
        ("570.133.07", "12.8", {"geforce"}, (False, False)),  # no compat for GeForce
        ("550.54.14", "12.4", {"tesla"}, (False, False)),  # R550 is not in this list
    ],
)
def test_space_separated_clauses_are_alternatives(
    driver: str, cuda: str, brands: set[str], expected: tuple[bool, bool]
) -> None:
    assert Requirement(CUDA_129).satisfied_by(driver, cuda, brands) == expected


def test_a_requirement_names_the_cuda_it_was_built_with() -> None:
    assert Requirement(CUDA_129).cuda == "12.9"
    assert Requirement("").satisfied_by("1.0", "1.0", set()) == (True, False), "no requirement"


def test_minimum_drivers_from_nvidias_table() -> None:
    assert driver_for_cuda("13.0") == "580.65.06"
    assert driver_for_cuda("12.9") == "575.51.03"
    assert driver_for_cuda("12.4") == "550.54.14"
    assert driver_for_cuda("11.8") is None and driver_for_cuda("") is None


@pytest.mark.parametrize(
    ("cap", "built", "runs"),
    [
        ("8.9", ("8.0", "8.6", "9.0"), True),  # a cubin for 8.6 runs on 8.9 (same major)
        ("8.0", ("8.6", "9.0"), False),  # but not on an older minor
        ("12.0", ("8.0", "8.6", "8.9", "9.0"), False),  # Blackwell: no cubin, no PTX
        ("12.0", ("8.0", "9.0+PTX"), True),  # PTX is compiled for newer GPUs
        ("7.0", ("7.5", "8.0", "12.0+PTX"), False),
        ("10.3", ("7.5", "10.0", "12.0+PTX"), True),
    ],
)
def test_gpu_architectures(cap: str, built: tuple[str, ...], runs: bool) -> None:
    assert arch_supported(cap, built) is runs


def test_the_pinned_images() -> None:
    cuda13 = known_image_needs("vllm/vllm-openai:v0.33.0")
    assert cuda13 is not None and cuda13.cuda == "13.0"
    assert cuda13.arch_list is not None and "7.0" not in cuda13.arch_list, "CUDA 13 has no Volta"
    cu129 = known_image_needs("vllm/vllm-openai:v0.33.0-cu129")
    assert cu129 is not None and cu129.cuda == "12.9"
    assert known_image_needs("vllm/vllm-openai:v0.19.1") is None, "before v0.20: CUDA 12.x"
    tgi = known_image_needs("ghcr.io/huggingface/text-generation-inference:3.3.5")
    assert tgi is not None and tgi.cuda == "12.4" and tgi.arch_list == ("8.0", "8.6", "9.0+PTX")
    assert known_image_needs("prom/prometheus:v3.5.0") is None


def test_a_dockerfile_says_its_cuda_and_architectures() -> None:
    text = (
        "FROM nvidia/cuda:12.4.1-devel-ubuntu22.04\n"
        "# e.g. TORCH_CUDA_ARCH_LIST=7.5 for older cards (a comment, not the setting)\n"
        'ENV TORCH_CUDA_ARCH_LIST="8.0;8.6+PTX"\n'
    )
    needs = dockerfile_needs(text, "Dockerfile")
    assert needs is not None and needs.cuda == "12.4" and needs.arch_list == ("8.0", "8.6+PTX")
    assert dockerfile_needs("FROM python:3.11-slim\n", "Dockerfile") is None
    ours = (REPO_ROOT / "services/exllamav2/Dockerfile").read_text()
    exl2 = dockerfile_needs(ours, "services/exllamav2/Dockerfile")
    assert exl2 is not None and exl2.cuda and exl2.arch_list, "the ExLlamaV2 image is read"


def test_a_pulled_image_speaks_for_itself() -> None:
    env = {"NVIDIA_REQUIRE_CUDA": "cuda>=13.0 brand=tesla,driver>=570,driver<571"}
    needs = image_env_needs(env, "vllm/vllm-openai:v0.33.0")
    assert needs is not None and needs.cuda == "13.0"
    assert needs.arch_list and "7.5" in needs.arch_list, "architectures from the known tag"
    assert image_env_needs({}, "x") is None


def test_brands_from_gpu_names() -> None:
    assert gpu_brands("NVIDIA GeForce RTX 4090") == {"geforce", "geforcertx"}
    assert "tesla" in gpu_brands("NVIDIA H100 80GB HBM3")
    assert "nvidiartx" in gpu_brands("NVIDIA RTX A6000")
