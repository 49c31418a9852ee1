"""The `bench.yaml` model: targets plus the load, workload and analysis parts their packages own.

Validated once, here, at the boundary; an unknown key or a bad value becomes one ConfigError
line naming the file and the field path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from analysis.config import AnalysisConfig, SloConfig
from analysis.validity import samples_needed
from loadtest.config import (
    EndpointSpec,
    LoadConfig,
    PositiveDuration,
    SampleGoal,
    TimeoutConfig,
    WorkloadConfig,
    mode_problem,
)
from loadtest.limits import overload_problem, replay_problem
from loadtest.prompts import DatasetError, load_dataset
from loadtest.quality import QualityInputError, check_inputs
from loadtest.quality.config import QualityConfig
from loadtest.replay import controlled_trace
from loadtest.sessions import load_conversations
from loadtest.traces import Trace, TraceError
from loadtest.workload import prompt_source
from quantbench.errors import ConfigError
from services.sim.config import SimSettings

__all__ = [
    "BenchConfig",
    "TargetConfig",
    "TelemetryConfig",
    "format_validation_error",
    "load_config",
]


class TargetConfig(BaseModel):
    """One server to measure: an external `url`, or `sim:` to start a simulator for it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    api: Literal["openai", "tgi"] = "openai"
    url: str | None = Field(default=None, pattern=r"^https?://")
    model: str | None = None
    stack: Literal["vllm", "tgi", "exllamav2", "other"] | None = None
    quant: str | None = None
    metrics_url: str | None = None
    api_key_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    sim: SimSettings | None = None
    compose: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

    @model_validator(mode="after")
    def _one_source(self) -> TargetConfig:
        if sum(source is not None for source in (self.url, self.sim, self.compose)) != 1:
            raise ValueError(
                "give exactly one of `url` (a running server), `sim` (a simulator) or "
                "`compose` (a service of the compose file)"
            )
        return self

    @property
    def simulated(self) -> bool:
        return self.sim is not None

    @property
    def resolved_stack(self) -> str:
        return self.stack or (self.sim.stack if self.sim else "other")

    @property
    def resolved_quant(self) -> str:
        return self.quant or (self.sim.quant if self.sim else "")

    def endpoint(self, model: str | None = None) -> EndpointSpec:
        return EndpointSpec(
            name=self.name,
            api=self.api,
            stack=self.resolved_stack,  # type: ignore[arg-type]
            model=model or self.model,
            api_key_env=self.api_key_env,
        )


class PrometheusConfig(BaseModel):
    """A Prometheus server scraping the targets: the analysis queries it for server figures
    (falling back to the run's own `/metrics` scrapes if it cannot)."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(pattern=r"^https?://")


class TelemetryConfig(BaseModel):
    """Where GPU samples come from while each target's stages run (docs/telemetry.md).

    `auto`: a simulator's own simulated exporter for `sim:` targets; for the others the
    dcgm-exporter at `dcgm_url` if given, else NVML, else nvidia-smi on this host (only for
    targets on this host), else none, and run.json says which and why. A named source that
    cannot be read stops the run before the target starts. `gpus`: the GPU indices the
    targets run on (default: a compose target's `GPU_ID`, every GPU for a URL target)."""

    model_config = ConfigDict(extra="forbid")

    source: Literal["auto", "dcgm", "nvml", "nvidia-smi", "none"] = "auto"
    dcgm_url: str | None = Field(default=None, pattern=r"^https?://")
    interval: PositiveDuration = 1.0
    gpus: list[int] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _dcgm_has_a_url(self) -> TelemetryConfig:
        if self.source == "dcgm" and self.dcgm_url is None:
            raise ValueError(
                "source dcgm needs dcgm_url, the exporter's page "
                "(e.g. http://127.0.0.1:9400/metrics)"
            )
        return self


class BenchConfig(BaseModel):
    """The whole bench.yaml. `repeats`: how many times each target's stages run, interleaved
    across targets (A, B, C, A, B, C, …) so that drift over the run hits all alike."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="bench", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    targets: list[TargetConfig] = Field(min_length=1)
    repeats: int = Field(default=1, ge=1, le=100)
    compose_file: Path = Path("docker-compose.yml")  # relative to the bench.yaml
    workload: WorkloadConfig = WorkloadConfig()
    load: LoadConfig = LoadConfig()
    timeouts: TimeoutConfig = TimeoutConfig()
    slo: SloConfig = SloConfig()
    analysis: AnalysisConfig = AnalysisConfig()
    prometheus: PrometheusConfig | None = None
    telemetry: TelemetryConfig = TelemetryConfig()
    quality: QualityConfig | None = None  # probed after each target's stages, or alone
    _trace: Trace | None = PrivateAttr(default=None)  # the controlled trace, read at load

    @property
    def replay_trace(self) -> Trace | None:
        """`workload.trace` as replayed (window, sample, speedup applied), read once: at
        `load_config`, or here when the config came from elsewhere (a resumed run.json)."""
        if self._trace is None and self.workload.trace is not None:
            self._trace = controlled_trace(self.workload)
        return self._trace

    def sample_goal(self) -> SampleGoal:
        """What each stage must sample before it ends: the ok requests the SLO's percentile
        needs by the analysis' own validity rule (so a stage that ends is valid on its count),
        and the error limit past which extending it is pointless."""
        need, label = samples_needed(self.slo, self.analysis)
        return SampleGoal(
            min_ok=need, percentile=label, max_error_rate=self.analysis.max_error_rate
        )

    @model_validator(mode="after")
    def _unique_names(self) -> BenchConfig:
        seen: set[str] = set()
        for target in self.targets:
            if target.name in seen:
                raise ValueError(f"target name {target.name!r} is used twice; names must be unique")
            seen.add(target.name)
        return self

    @model_validator(mode="after")
    def _search_needs_an_slo(self) -> BenchConfig:
        if self.load.mode == "sweep" and self.repeats > 1:
            raise ValueError("load.mode: sweep runs once per target; remove repeats")
        if self.load.mode != "search":
            return self
        if not self.slo.objectives():
            raise ValueError("load.mode: search looks for the rate that meets the slo; set one")
        if self.repeats > 1:
            raise ValueError("load.mode: search runs once per target; remove repeats")
        return self

    @model_validator(mode="after")
    def _within_generator_limits(self) -> BenchConfig:
        problem = mode_problem(self.load, self.workload) or overload_problem(
            self.load, self.workload
        )
        if problem is not None:
            raise ValueError(problem)
        return self

    @model_validator(mode="after")
    def _sessions_speak_chat(self) -> BenchConfig:
        if self.workload.sessions is not None:
            native = [t.name for t in self.targets if t.api == "tgi"]
            if native:
                raise ValueError(
                    f"workload.sessions send chat conversations; target {native[0]} uses "
                    "api: tgi (TGI's native API has no messages): use api: openai"
                )
        return self


def _loc(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif "[" not in part:  # skip pydantic's validator tags, e.g. "function-after[...]"
            text += f".{part}" if text else part
    return text


def format_validation_error(source: str, error: ValidationError) -> str:
    """One line: `file: field.path: what is wrong (and N more problems)`."""
    errors = error.errors(include_url=False)
    first = errors[0]
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = "unknown key (check its spelling and indentation)"
    elif first["type"] == "missing":
        message = "required but missing"
    elif first["type"] == "value_error":
        message = message.removeprefix("Value error, ")  # pydantic's prefix says nothing
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    where = _loc(tuple(first["loc"]))  # empty for a check across sections: it names its fields
    return f"{source}: {where + ': ' if where else ''}{message}{more}"


def load_config(path: Path) -> BenchConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
            "save it as UTF-8"
        ) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}{where}: YAML syntax error: {problem}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with `targets:` at the top level")
    try:
        config = BenchConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(str(path), exc)) from exc
    if not config.compose_file.is_absolute():
        config.compose_file = (path.parent / config.compose_file).resolve()
    _check_workload_files(config, path)
    _resolve_quality_files(config, path)
    return config


def _resolve_quality_files(config: BenchConfig, path: Path) -> None:
    """The quality section's files are relative to the bench.yaml, like the workload's; they
    are read once now, so a bad one is one line before any target starts."""
    if config.quality is None:
        return
    for field in ("text", "tokenizer", "prompts", "tasks"):
        value = getattr(config.quality, field)
        if value is not None and not value.is_absolute():
            setattr(config.quality, field, (path.parent / value).resolve())
    try:
        check_inputs(config.quality)
    except QualityInputError as exc:
        raise ConfigError(f"{path}: quality: {exc}") from exc


def _check_workload_files(config: BenchConfig, path: Path) -> None:
    """Resolve dataset, tokenizer, trace and sessions paths against the bench.yaml and load
    them once now, so a bad file is one line before any target starts."""
    workload = config.workload
    for section, field in (
        (workload, "dataset"),
        (workload, "tokenizer"),
        (workload.trace, "file"),
        (workload.sessions, "file"),
    ):
        value = getattr(section, field) if section is not None else None
        if value is not None and not value.is_absolute():
            setattr(section, field, (path.parent / value).resolve())
    try:
        if workload.dataset is not None:
            load_dataset(workload.dataset)
        if workload.tokenizer is not None:
            prompt_source(workload)
        if workload.sessions is not None and workload.sessions.file is not None:
            load_conversations(workload.sessions.file)
    except DatasetError as exc:
        raise ConfigError(f"{path}: workload: {exc}") from exc
    if workload.trace is not None:
        _check_trace(config, path)


def _check_trace(config: BenchConfig, path: Path) -> None:
    """Read the trace (one `file:line: what` for a bad row) and check the replay it makes:
    each stage longer than its warm-up, within what the generator times accurately."""
    try:
        trace = config.replay_trace
    except TraceError as exc:
        raise ConfigError(f"{path}: workload.trace: {exc}") from exc
    assert trace is not None
    shortest_s = trace.span_s / max(config.load.stages)
    if config.load.warmup >= shortest_s:
        raise ConfigError(
            f"{path}: load.warmup: {config.load.warmup:g} s is the whole of the shortest stage "
            f"(the trace's {trace.span_s:g} s at {max(config.load.stages):g}× its rate lasts "
            f"{shortest_s:.3g} s); lower the warm-up, or replay a longer window"
        )
    rate = len(trace) / trace.span_s if trace.span_s > 0 else float(len(trace))
    problem = replay_problem(config.load, rate, float(trace.output_tokens.mean()))
    if problem is not None:
        raise ConfigError(f"{path}: {problem}")
