"""run.json: the typed, versioned description of a run, beside the records it explains.

Written by `quantbench run` (and by the locustfile when Locust runs by hand), read by the
analysis, always through `RunMeta`. It holds the config as resolved (secrets only as the
names of environment variables), versions, host, start and end, and per target what became
known while it ran (model, server info, metrics URL).

Versions: `schema_version` is `SCHEMA_VERSION` in every file written now. A file without it
was written before run.json had a schema (version 0): its keys are the same, so it loads,
keys this model does not know dropped. Version 1 lacks each target's `telemetry` and
`container` (added in 2): it loads as it is. A file from a newer quantbench is refused with a
message that says so, rather than half read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from loadtest.config import LoadConfig, TimeoutConfig

__all__ = [
    "RUN_FILE",
    "SCHEMA_VERSION",
    "ContainerMeta",
    "RunMeta",
    "RunMetaError",
    "TargetMeta",
    "TelemetryMeta",
]

RUN_FILE = "run.json"
SCHEMA_VERSION = 2


class RunMetaError(ValueError):
    """run.json is missing, unreadable, or not a run.json this version understands."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TelemetryMeta(_Strict):
    """Where a target's GPU samples (gpu.jsonl) came from, or why there are none.

    `source`: `dcgm` (an exporter at `url`), `simulated-dcgm` (a simulator's own page),
    `nvml`, `nvidia-smi` or `none`; `gpus`: what the source saw, one line per GPU; `kept`: the
    indices sampled for this target (None: all); `note`: why this source (or none) was used."""

    source: str
    url: str | None = None
    interval_s: float | None = None
    gpus: list[str] = Field(default_factory=list)
    kept: list[int] | None = None
    note: str | None = None
    samples: int = 0
    scrape_errors: int = 0
    error: str | None = None  # why sampling stopped early


class ContainerMeta(_Strict):
    """A compose target's container as the Docker Engine API described it when its stages
    began (identity, image digest) and ended (state); `changed` says what happened to it
    meanwhile (a restart, an OOM kill), `logs` where its last log lines were saved."""

    service: str
    project: str = ""
    container_id: str = ""
    name: str = ""
    image: str = ""
    image_id: str = ""
    repo_digest: str | None = None
    started_at: str = ""
    restart_count: int = 0
    oom_killed: bool = False
    exit_code: int = 0
    status: str = ""
    changed: str | None = None
    logs: str | None = None
    note: str | None = None  # the Engine API could not be read


class TargetMeta(_Strict):
    """One measured target as run.json records it."""

    name: str
    stack: str = "other"
    quant: str = ""
    simulated: bool = False
    api: str = "openai"
    url: str | None = None
    sim: dict[str, Any] | None = None  # the simulator's settings (services.sim.SimSettings)
    compose: dict[str, Any] | None = None  # service, image digest, resolved flags
    model: str | None = None
    server_info: dict[str, Any] = Field(default_factory=dict)  # /version, /info
    metrics_url: str | None = None
    prompt_length: str | None = None  # tokenizer | calibrated | approximate
    tokens_per_word: float | None = None
    started_at: str | None = None
    ended_at: str | None = None
    stopped: str | None = None  # why its remaining stages were skipped (e.g. it went down)
    telemetry: TelemetryMeta | None = None  # schema 2
    container: ContainerMeta | None = None  # schema 2: compose targets


class RunMeta(_Strict):
    """The whole of run.json."""

    schema_version: int = SCHEMA_VERSION
    run_id: str = ""
    name: str = "run"
    source: str = "quantbench run"  # or "locust" for a run driven by Locust by hand
    quantbench_version: str = ""
    versions: dict[str, str] = Field(default_factory=dict)
    host: dict[str, Any] = Field(default_factory=dict)
    started_at: str | None = None
    ended_at: str | None = None
    resumed_at: list[str] = Field(default_factory=list)
    interrupted: str | None = None  # the signal that stopped the last attempt, if one did
    seeds: dict[str, int] = Field(default_factory=dict)
    config: dict[str, Any] = Field(default_factory=dict)  # bench.yaml as resolved
    selected_targets: list[str] = Field(default_factory=list)
    targets: list[TargetMeta] = Field(default_factory=list)

    def target(self, name: str) -> TargetMeta | None:
        return next((t for t in self.targets if t.name == name), None)

    def timeouts(self) -> TimeoutConfig:
        return TimeoutConfig.model_validate(self.config.get("timeouts") or {})

    def load(self) -> LoadConfig:
        return LoadConfig.model_validate(self.config.get("load") or {})

    def prometheus_url(self) -> str | None:
        section = self.config.get("prometheus") or {}
        return section.get("url") if isinstance(section, dict) else None

    @classmethod
    def read(cls, run_dir: Path) -> RunMeta:
        path = run_dir / RUN_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise RunMetaError(
                f"{path}: not found; is {run_dir} a quantbench run directory?"
            ) from exc
        except OSError as exc:
            raise RunMetaError(f"{path}: cannot read ({exc.strerror or exc})") from exc
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RunMetaError(f"{path}: not valid JSON ({exc})") from exc
        return cls.from_json_data(data, str(path))

    @classmethod
    def from_json_data(cls, data: object, source: str = RUN_FILE) -> RunMeta:
        if not isinstance(data, dict):
            raise RunMetaError(f"{source}: expected a JSON object")
        version = data.get("schema_version", 0)
        if not isinstance(version, int) or isinstance(version, bool):
            raise RunMetaError(f"{source}: schema_version {version!r} is not a whole number")
        if version > SCHEMA_VERSION:
            raise RunMetaError(
                f"{source}: written by a newer quantbench (run.json schema {version}; this "
                f"version reads up to {SCHEMA_VERSION}): upgrade quantbench to read it"
            )
        if version == 0:
            data = _from_version_0(data)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(part) for part in first["loc"]) or "(top level)"
            raise RunMetaError(f"{source}: {where}: {first['msg']}") from exc

    def write(self, run_dir: Path) -> Path:
        """Atomically (re)write run.json."""
        path = run_dir / RUN_FILE
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)
        return path


def _known(data: dict[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    return {key: value for key, value in data.items() if key in model.model_fields}


def _from_version_0(data: dict[str, Any]) -> dict[str, Any]:
    """run.json from before the schema: the same keys, a few absent; unknown ones dropped."""
    migrated = _known(data, RunMeta)
    targets = data.get("targets") or []
    if isinstance(targets, list):
        migrated["targets"] = [_known(t, TargetMeta) if isinstance(t, dict) else t for t in targets]
    for key in ("server_info",):
        for target in migrated.get("targets", []):
            if isinstance(target, dict) and target.get(key) is None:
                target.pop(key, None)
    migrated["schema_version"] = SCHEMA_VERSION
    return migrated
