"""Engine profiles by name: one YAML per stack x quantization, one entry per GPU, plus the
quantization's `quality:` block (how far its outputs are from FP16's, for every GPU).

Files live in `profiles/` (package data); an unknown name raises `SimConfigError` listing the
valid ones.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

import yaml
from pydantic import ValidationError

from services.sim.config import EngineProfile, QualityProfile
from services.sim.errors import SimConfigError

__all__ = ["available_profiles", "load_profile", "load_quality"]

_SHARED_KEYS = ("source", "description", "kv_allocation", "prefix_caching", "block_size")


def _profile_dir() -> Any:
    return resources.files("services.sim").joinpath("profiles")


@functools.cache
def _read(stack: str, quant: str) -> dict[str, Any]:
    path = _profile_dir().joinpath(f"{stack}-{quant}.yaml")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SimConfigError(f"profile {stack}-{quant}.yaml is not valid YAML: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("gpus"), dict):
        raise SimConfigError(f"profile {stack}-{quant}.yaml needs a top-level 'gpus:' mapping")
    return data


def available_profiles() -> list[tuple[str, str, list[str]]]:
    """Every (stack, quant, gpus) triple that has a profile file, sorted."""
    found = []
    for entry in _profile_dir().iterdir():
        name = entry.name
        if not name.endswith(".yaml") or "-" not in name:
            continue
        stack, quant = name.removesuffix(".yaml").split("-", 1)
        found.append((stack, quant, sorted(_read(stack, quant)["gpus"])))
    return sorted(found)


def load_profile(stack: str, quant: str, gpu: str) -> EngineProfile:
    """The engine profile of `stack` serving a `quant` model on `gpu`."""
    known = available_profiles()
    if stack not in {s for s, _, _ in known}:
        valid = ", ".join(sorted({s for s, _, _ in known}))
        raise SimConfigError(f"unknown simulated stack {stack!r}; valid: {valid}")
    quants = {q: gpus for s, q, gpus in known if s == stack}
    if quant not in quants:
        raise SimConfigError(
            f"no {stack} profile for quant {quant!r}; valid: {', '.join(sorted(quants))}"
        )
    if gpu not in quants[quant]:
        raise SimConfigError(
            f"no {stack}-{quant} profile for gpu {gpu!r}; valid: {', '.join(quants[quant])}"
        )
    data = _read(stack, quant)
    fields = {key: data[key] for key in _SHARED_KEYS if key in data}
    fields.update(data["gpus"][gpu])
    try:
        return EngineProfile.model_validate(fields)
    except ValidationError as exc:
        raise SimConfigError(f"profile {stack}-{quant}.yaml gpus.{gpu}: {exc}") from exc


def load_quality(stack: str, quant: str) -> QualityProfile:
    """The `quality:` block of the `stack-quant` profile; a quant without a profile file (any
    label under `timing: fixed`) is simulated as FP16, without degradation."""
    if (stack, quant) not in {(s, q) for s, q, _ in available_profiles()}:
        return QualityProfile(source=f"no {stack}-{quant} profile: simulated as FP16")
    block = _read(stack, quant).get("quality")
    if not isinstance(block, dict):
        raise SimConfigError(f"profile {stack}-{quant}.yaml needs a top-level 'quality:' mapping")
    try:
        return QualityProfile.model_validate(block)
    except ValidationError as exc:
        raise SimConfigError(f"profile {stack}-{quant}.yaml quality: {exc}") from exc
