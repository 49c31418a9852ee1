"""Whether two runs measured the same thing (pure): the gate refuses to compare runs that
differ in their workload, load plan, SLO, targets, or a target's stack, quantization, model
or GPU, and warns about (or, by policy, refuses) a different container image digest.

What may differ between a base and a candidate run: the seed of the workload (a nightly run
draws new prompts), the time, the host name, the simulator's faults (that is what a simulated
candidate changes) and everything the server reports about itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from analysis.thresholds import DigestPolicy
from loadtest.run_meta import RunMeta, TargetMeta

__all__ = ["Difference", "differences", "image_digest", "target_gpu"]

# Keys of the config sections that do not change what is measured.
_IGNORED = {
    "workload": {"seed"},
    "load": {"processes", "allow_overload", "max_in_flight", "drain_timeout"},
    "slo": set(),
}


@dataclass(frozen=True)
class Difference:
    """One field that differs: `field` is a dotted path (`workload.output_tokens.mean`)."""

    field: str
    base: Any
    new: Any

    def text(self) -> str:
        return f"{self.field} differs: base {_show(self.base)}, new {_show(self.new)}"


def _show(value: Any) -> str:
    if value is None:
        return "not recorded"
    text = str(value) if isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _first_difference(path: str, base: Any, new: Any) -> Difference | None:
    """The first leaf (in key order) where two JSON-like values differ."""
    if isinstance(base, dict) and isinstance(new, dict):
        for key in sorted(set(base) | set(new), key=str):
            found = _first_difference(f"{path}.{key}", base.get(key), new.get(key))
            if found is not None:
                return found
        return None
    return None if base == new else Difference(path, base, new)


def _section(meta: RunMeta, name: str) -> dict[str, Any]:
    section = meta.config.get(name) or {}
    if not isinstance(section, dict):
        return {"value": section}
    return {k: v for k, v in section.items() if k not in _IGNORED.get(name, set())}


def target_gpu(meta: RunMeta, target: TargetMeta) -> str | None:
    """The GPU type a target ran on: the simulator's profile GPU, else the host's GPU names
    when run.json records them (`host.gpus`), else None (not recorded)."""
    if target.sim is not None:
        gpu = target.sim.get("gpu")
        return f"{gpu} (simulated)" if gpu else None
    gpus = meta.host.get("gpus")
    if isinstance(gpus, list) and gpus:
        names = [str(g.get("name", g)) if isinstance(g, dict) else str(g) for g in gpus]
        return ", ".join(sorted(names))
    return None


def image_digest(target: TargetMeta) -> str | None:
    """The container image a compose target ran: its registry digest, else its image ID."""
    image = (target.compose or {}).get("image") or {}
    if not isinstance(image, dict):
        return None
    return image.get("repo_digest") or image.get("image_id")


def _target_differences(name: str, base: TargetMeta, new: TargetMeta) -> list[Difference]:
    found = []
    for field in ("stack", "quant", "api", "simulated"):
        if getattr(base, field) != getattr(new, field):
            found.append(
                Difference(f"target {name}: {field}", getattr(base, field), getattr(new, field))
            )
    if base.model and new.model and base.model != new.model:
        found.append(Difference(f"target {name}: model", base.model, new.model))
    return found


def differences(
    base: RunMeta, new: RunMeta, digest_policy: DigestPolicy = "warn"
) -> tuple[list[Difference], list[Difference]]:
    """(refusals, warnings): the fields that make the runs incomparable, and those that are
    only worth saying. The image digest is a refusal or a warning by `digest_policy`."""
    refusals: list[Difference] = []
    warnings: list[Difference] = []
    names_base = [t.name for t in base.targets]
    names_new = [t.name for t in new.targets]
    if set(names_base) != set(names_new):
        only_base = sorted(set(names_base) - set(names_new)) or "none"
        only_new = sorted(set(names_new) - set(names_base)) or "none"
        refusals.append(
            Difference("targets", f"only in base: {only_base}", f"only in new: {only_new}")
        )
    for section in ("workload", "load", "slo"):
        found = _first_difference(section, _section(base, section), _section(new, section))
        if found is not None:
            refusals.append(found)
    for name in [n for n in names_new if n in names_base]:
        old, now = base.target(name), new.target(name)
        assert old is not None and now is not None
        refusals += _target_differences(name, old, now)
        gpu_old, gpu_new = target_gpu(base, old), target_gpu(new, now)
        if gpu_old and gpu_new and gpu_old != gpu_new:
            refusals.append(Difference(f"target {name}: GPU", gpu_old, gpu_new))
        digest_old, digest_new = image_digest(old), image_digest(now)
        if digest_old != digest_new and (digest_old or digest_new):
            found = Difference(f"target {name}: image digest", digest_old, digest_new)
            (refusals if digest_policy == "refuse" else warnings).append(found)
    return refusals, warnings
